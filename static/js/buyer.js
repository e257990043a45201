// Tell the portal the invoice page was shown in a browser (scanners rarely run scripts).
(function () {
  "use strict";
  var script = document.currentScript;
  var url = script && script.getAttribute("data-shown-url");
  if (!url) { return; }
  window.addEventListener("load", function () {
    var token = document.querySelector("meta[name=csrf-token]").getAttribute("content");
    fetch(url, { method: "POST", headers: { "X-CSRFToken": token }, credentials: "same-origin" });
  });
})();
