"""Xem hóa đơn đã chọn: the selected invoices' PDFs merged into one, with fonts shared.

pikepdf (qpdf) merged 1,000 one-page invoices about 2.5 times faster than pypdf (docs/
stack.md). Each invoice's PDF embeds its own copy of the fonts it uses; identical font files
are kept once, so the merged file does not carry the same font fifty times.
"""

import hashlib
import io

import pikepdf
from flask import current_app

from portal.extensions import db
from portal.models import Invoice
from portal.rendering.service import invoice_pdf


def selected_pdf(invoice_ids: list[int]) -> bytes:
    """Merge the invoices' PDFs (the first BULK_PREVIEW_MAX of them), in the order given."""
    limit = int(current_app.config.get("BULK_PREVIEW_MAX", 500))
    merged = pikepdf.Pdf.new()
    for invoice_id in invoice_ids[:limit]:
        invoice = db.session.get(Invoice, invoice_id)
        source = pikepdf.Pdf.open(io.BytesIO(invoice_pdf(invoice)))
        merged.pages.extend(source.pages)
        db.session.rollback()  # hold no snapshot while the next one renders (cache misses)
    share_fonts(merged)
    output = io.BytesIO()
    merged.save(output, compress_streams=True, object_stream_mode=pikepdf.ObjectStreamMode.generate)
    return output.getvalue()


def share_fonts(pdf: pikepdf.Pdf) -> int:
    """Point every font descriptor at one copy of each identical font file; return how many went."""
    kept: dict[str, pikepdf.Object] = {}
    dropped = 0
    for page in pdf.pages:
        fonts = page.obj.get("/Resources", {}).get("/Font", {})
        for name in list(fonts.keys()):
            descriptor = fonts[name].get("/FontDescriptor")
            if descriptor is None:
                continue
            for key in ("/FontFile2", "/FontFile", "/FontFile3"):
                stream = descriptor.get(key)
                if stream is None:
                    continue
                digest = hashlib.sha256(stream.read_raw_bytes()).hexdigest()
                if digest in kept and kept[digest].objgen != stream.objgen:
                    descriptor[key] = kept[digest]
                    dropped += 1
                else:
                    kept.setdefault(digest, stream)
    return dropped
