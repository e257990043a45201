// hoadon-portal: the little behaviour htmx does not cover (dialogs, copy to clipboard, select all).
(function () {
  "use strict";

  function openDialogs(root) {
    root.querySelectorAll("dialog:not([open])").forEach(function (dialog) {
      if (dialog.hasAttribute("data-autoclose")) {
        dialog.remove();
        return;
      }
      if (!dialog.closest(".page-dialog")) {
        dialog.showModal();
      } else {
        dialog.setAttribute("open", "");
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () { openDialogs(document); });
  document.addEventListener("htmx:load", function (event) { openDialogs(event.target.parentElement || document); });

  document.addEventListener("click", function (event) {
    var close = event.target.closest("[data-close-dialog]");
    if (close) {
      var dialog = close.closest("dialog");
      if (dialog.closest(".page-dialog")) {
        window.history.back();
      } else {
        dialog.close();
        dialog.remove();
      }
      return;
    }
    var all = event.target.closest("[data-select-all]");
    if (all) {
      document.querySelectorAll(all.getAttribute("data-select-all")).forEach(function (box) {
        box.checked = all.checked;
      });
      return;
    }
    var copy = event.target.closest("[data-copy]");
    if (copy) {
      var source = copy.closest("dialog, body").querySelector(copy.getAttribute("data-copy"));
      source.select();
      if (navigator.clipboard) {
        navigator.clipboard.writeText(source.value);
      } else {
        document.execCommand("copy");
      }
      copy.textContent = copy.getAttribute("data-copied") || "✓";
    }
  });
})();
