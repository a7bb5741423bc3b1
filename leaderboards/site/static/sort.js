// Click a column header to sort its table by that column; click again to reverse. Cells carry data-sort:
// two numbers compare as numbers, anything else as text; empty cells always go last.
"use strict";

function sortKey(row, index) {
  const cell = row.cells[index];
  return cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
}

function compareKeys(a, b, ascending) {
  if (a === "" || b === "") {
    return (a === "") - (b === "");
  }
  const x = Number(a);
  const y = Number(b);
  const order = Number.isNaN(x) || Number.isNaN(y) ? a.localeCompare(b) : x - y;
  return ascending ? order : -order;
}

function sortTable(table, header) {
  const index = header.cellIndex;
  const ascending = header.getAttribute("aria-sort") !== "ascending";
  for (const other of header.parentNode.cells) {
    other.removeAttribute("aria-sort");
  }
  header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((a, b) => compareKeys(sortKey(a, index), sortKey(b, index), ascending));
  for (const row of rows) {
    body.appendChild(row);
  }
}

for (const table of document.querySelectorAll("table.sortable")) {
  for (const header of table.tHead.rows[0].cells) {
    header.addEventListener("click", () => sortTable(table, header));
  }
}
