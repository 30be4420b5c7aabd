// Makes the fidelity fixtures of worker/extract's quality test with
// producers the other fixtures do not use: the JavaScript libraries web
// applications embed to write Office files (docx, exceljs). The outputs are
// committed; run only to change them:
//   cd "$(mktemp -d)" && npm install docx@9 exceljs@4 &&
//   NODE_PATH=$PWD/node_modules node /path/to/scripts/fidelity/make-fidelity.mjs /path/to/scripts/testdata
// It writes corpus/documents/{berths.docx,arrivals.xlsx} and, beside the
// other reference texts, documents/{berths.txt,arrivals.csv}: what a reader
// of each file sees.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(path.join(process.env.NODE_PATH || ".", "x.js"));
const docx = require("docx");
const ExcelJS = require("exceljs");
const root = process.argv[2];
const out = path.join(root, "corpus", "documents");
const ref = path.join(root, "documents");
const date = new Date("2024-10-01T00:00:00Z");

async function word() {
  const { Document, Packer, Paragraph, TextRun, Header, Footer, FootnoteReferenceRun, EndnoteReferenceRun, InsertedTextRun, DeletedTextRun,
    CommentRangeStart, CommentRangeEnd, CommentReference, HeadingLevel } = docx;
  const p = (text) => new Paragraph({ children: [new TextRun(text)] });
  const doc = new Document({
    footnotes: { 1: { children: [p("Measured over the twelve months to September, excluding the dredging closure.")] } },
    endnotes: { 1: { children: [p("Source: the harbour master's berth allocation ledger, reconciled quarterly.")] } },
    comments: { children: [{ id: 0, author: "Reviewer", date, children: [p("Check the pilotage figures against the tide tables.")] }] },
    sections: [
      {
        headers: { default: new Header({ children: [p("Northern Quay Authority - Berth Planning Memorandum")] }) },
        footers: { default: new Footer({ children: [p("Internal distribution only, prepared by the marine operations office")] }) },
        children: [
          new Paragraph({ heading: HeadingLevel.HEADING_1, children: [new TextRun("Berth allocation for the winter season")] }),
          new Paragraph({ children: [
            new TextRun("Average vessel waiting time fell to nine hours"),
            new FootnoteReferenceRun(1),
            new TextRun(" after the second gantry crane entered service on the eastern berth."),
          ] }),
          new Paragraph({ children: [
            new CommentRangeStart(0),
            new TextRun("Pilotage requests are accepted until eighteen hundred for next morning arrivals."),
            new CommentRangeEnd(0),
            new TextRun({ children: [new CommentReference(0)] }),
          ] }),
          new Paragraph({ children: [
            new TextRun("Container feeders keep their weekly windows "),
            new DeletedTextRun({ text: "without any exception ", id: 1, author: "Planner", date: "2024-10-01T09:00:00Z" }),
            new InsertedTextRun({ text: "unless a storm warning closes the channel ", id: 2, author: "Planner", date: "2024-10-01T09:00:00Z" }),
            new TextRun("and bulk carriers are scheduled around them."),
            new EndnoteReferenceRun(1),
          ] }),
        ],
      },
      {
        headers: { default: new Header({ children: [p("Appendix header for the tariff schedule")] }) },
        children: [p("Tariffs for shore power connections are published separately by the energy desk.")],
      },
    ],
  });
  fs.writeFileSync(path.join(out, "berths.docx"), await Packer.toBuffer(doc));
  // What a reader sees (tracked changes accepted; comments are advanced
  // processing's, so not in the reference).
  fs.writeFileSync(path.join(ref, "berths.txt"), [
    "Northern Quay Authority - Berth Planning Memorandum",
    "Berth allocation for the winter season",
    "Average vessel waiting time fell to nine hours 1 after the second gantry crane entered service on the eastern berth.",
    "Pilotage requests are accepted until eighteen hundred for next morning arrivals.",
    "Container feeders keep their weekly windows unless a storm warning closes the channel and bulk carriers are scheduled around them. 1",
    "Appendix header for the tariff schedule",
    "Tariffs for shore power connections are published separately by the energy desk.",
    "Internal distribution only, prepared by the marine operations office",
    "1 Measured over the twelve months to September, excluding the dredging closure.",
    "1 Source: the harbour master's berth allocation ledger, reconciled quarterly.",
    "",
  ].join("\n"));
}

async function sheet() {
  const wb = new ExcelJS.Workbook();
  const ws = wb.addWorksheet("Arrivals");
  ws.columns = [
    { header: "Vessel", key: "vessel" },
    { header: "Arrival", key: "arrival", style: { numFmt: "yyyy-mm-dd" } },
    { header: "Pilot at", key: "pilot", style: { numFmt: "h:mm" } },
    { header: "Utilisation", key: "util", style: { numFmt: "0%" } },
    { header: "Dues", key: "dues", style: { numFmt: "#,##0.00" } },
    { header: "Cleared", key: "cleared" },
    { header: "Double dues", key: "double", style: { numFmt: "#,##0.00" } },
    { header: "Logged", key: "logged", style: { numFmt: "d mmm yyyy hh:mm" } },
  ];
  const rows = [
    ["Nordic Star", "2024-10-01", 0.2916666666666667, 0.85, 12500.5, true, "2024-10-01T06:30:00Z"],
    ["Baltic Trader", "2024-10-03", 0.75, 0.6, 8200, false, "2024-10-03T18:00:00Z"],
    ["Hidden Row Vessel", "2024-10-04", 0.5, 0.1, 100, true, "2024-10-04T12:00:00Z"],
    ["Aurora Bay", "2025-01-15", 0.5625, 0.925, 1234567.891, true, "2025-01-15T13:30:00Z"],
  ];
  rows.forEach((r, i) => {
    const n = i + 2;
    const row = ws.addRow({ vessel: r[0], arrival: new Date(r[1] + "T00:00:00Z"), pilot: r[2], util: r[3], dues: r[4], cleared: r[5],
      double: { formula: `E${n}*2`, result: r[4] * 2 }, logged: new Date(r[6]) });
    if (r[0].startsWith("Hidden")) row.hidden = true;
  });
  const scratch = wb.addWorksheet("Scratch", { state: "hidden" });
  scratch.addRow(["Internal scratch notes nobody should read"]);
  await wb.xlsx.writeFile(path.join(out, "arrivals.xlsx"));
  fs.writeFileSync(path.join(ref, "arrivals.csv"), [
    "Arrivals",
    "Vessel,Arrival,Pilot at,Utilisation,Dues,Cleared,Double dues,Logged",
    "Nordic Star,2024-10-01,7:00,85%,\"12,500.50\",TRUE,\"25,001.00\",1 Oct 2024 06:30",
    "Baltic Trader,2024-10-03,18:00,60%,\"8,200.00\",FALSE,\"16,400.00\",3 Oct 2024 18:00",
    "Aurora Bay,2025-01-15,13:30,93%,\"1,234,567.89\",TRUE,\"2,469,135.78\",15 Jan 2025 13:30",
    "",
  ].join("\n"));
}

await word();
await sheet();
