"""The invoice's renditions: the legal layout in HTML, the PDF, and the signed XML."""
