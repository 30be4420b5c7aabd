"""Makes the e-mail fixtures of worker/extract's quality test with a producer
the other fixtures do not use: Python's email package. The outputs are
committed; run only to change them:
    python3 scripts/fidelity/make-email.py
It writes corpus/documents/berth-notice.eml — an HTML-only body in
ISO-8859-1, quoted-printable, an RFC 2047 subject, the handbook PDF attached —
and corpus/documents/forwarded.eml — a plain and an HTML alternative, a
forwarded message attached, and a zip no extractor reads; and beside the
other reference texts documents/berth-notice.txt: what a reader sees."""
import os
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from datetime import datetime, timezone

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testdata")
out = os.path.join(root, "corpus", "documents")
ref = os.path.join(root, "documents")
date = format_datetime(datetime(2024, 10, 1, 9, 30, tzinfo=timezone.utc))

html = """<html><body><h1>Berth notice for the winter season</h1>
<p>The eastern berth closes for dredging from the fourteenth of November; feeders move to the north quay.</p>
<p>Pilotage requests for the closure weeks go to the harbour master's office before noon.</p>
<p>Grüße aus dem Hafenamt, façade repairs continue at the ferry terminal.</p></body></html>"""
notice = EmailMessage(policy=SMTP)
notice["From"] = "Hafenamt Nord <hafenamt@example.org>"
notice["To"] = "Berth planners <planning@example.org>"
notice["Date"] = date
notice["Subject"] = "Überblick: berth closures this winter"
notice.set_content(html, subtype="html", charset="iso-8859-1", cte="quoted-printable")
with open(os.path.join(root, "corpus", "documents", "handbook.pdf"), "rb") as f:
    notice.add_attachment(f.read(), maintype="application", subtype="pdf", filename="handbook.pdf")
with open(os.path.join(out, "berth-notice.eml"), "wb") as f:
    f.write(bytes(notice))
with open(os.path.join(ref, "source.txt"), encoding="utf-8") as f:
    handbook = f.read()
with open(os.path.join(ref, "berth-notice.txt"), "w", encoding="utf-8") as f:
    f.write("From: Hafenamt Nord <hafenamt@example.org>\nTo: Berth planners <planning@example.org>\n"
            "Date: Tue, 01 Oct 2024 09:30:00 +0000\nSubject: Überblick: berth closures this winter\n\n"
            "Berth notice for the winter season\n"
            "The eastern berth closes for dredging from the fourteenth of November; feeders move to the north quay.\n"
            "Pilotage requests for the closure weeks go to the harbour master's office before noon.\n"
            "Grüße aus dem Hafenamt, façade repairs continue at the ferry terminal.\n\n"
            "Attachment: handbook.pdf\n" + handbook)

inner = EmailMessage(policy=SMTP)
inner["From"] = "Tug dispatch <tugs@example.org>"
inner["To"] = "Hafenamt Nord <hafenamt@example.org>"
inner["Date"] = date
inner["Subject"] = "Tug availability"
inner.set_content("Two tugs are in dry dock until the end of the month.\n")
fwd = EmailMessage(policy=SMTP)
fwd["From"] = "Hafenamt Nord <hafenamt@example.org>"
fwd["To"] = "Berth planners <planning@example.org>"
fwd["Date"] = date
fwd["Subject"] = "Fwd: Tug availability"
fwd.set_content("Please plan the large arrivals around this.\n")
fwd.add_alternative("<p>Please plan the <b>large arrivals</b> around this.</p>", subtype="html")
fwd.add_attachment(inner)
fwd.add_attachment(b"PK\x05\x06" + b"\x00" * 18, maintype="application", subtype="zip", filename="empty.zip")
with open(os.path.join(out, "forwarded.eml"), "wb") as f:
    f.write(bytes(fwd))
