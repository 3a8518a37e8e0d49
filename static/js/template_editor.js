// Template editor: each row's input picker offers only the inputs of the node
// picked in that row, and "Add another parameter" copies the empty row.
// Without JS the input picker lists every node's inputs, grouped by node, and
// the server always renders one empty row at the end.
const table = document.querySelector("table.params");
const ALL_INPUTS = new WeakMap(); // input <select> -> its options as the server rendered them

function pickers(row) {
  return [row.querySelector("select.param-node"), row.querySelector("select.param-input")];
}

function offerInputs(row) {
  const [node, input] = pickers(row);
  if (!node || !input) return;
  if (!ALL_INPUTS.has(input)) {
    ALL_INPUTS.set(input, Array.from(input.children, (child) => child.cloneNode(true)));
  }
  const chosen = input.value;
  input.replaceChildren();
  for (const child of ALL_INPUTS.get(input)) {
    if (child.tagName !== "OPTGROUP") {
      input.append(child.cloneNode(true)); // the blank choice, or a value not in the graph
      continue;
    }
    const options = Array.from(child.children).filter(
      (option) => !node.value || option.dataset.node === node.value,
    );
    if (!options.length) continue;
    const group = child.cloneNode(false);
    group.append(...options.map((option) => option.cloneNode(true)));
    input.append(group);
  }
  const kept = Array.from(input.options).some((option) => option.value === chosen);
  input.value = kept ? chosen : "";
}

function inputPicked(row) {
  const [node, input] = pickers(row);
  const option = input.selectedOptions[0];
  if (!node.value && option?.dataset.node) {
    node.value = option.dataset.node;
    offerInputs(row);
  }
  const name = row.querySelector("input[name$='-name']");
  if (name && !name.value && input.value) name.value = input.value;
}

function addRow(template, total) {
  const index = total.value;
  const copy = template.content.cloneNode(true);
  for (const element of copy.querySelectorAll("[name], [id], [for]")) {
    for (const attribute of ["name", "id", "for"]) {
      const value = element.getAttribute(attribute);
      if (value) element.setAttribute(attribute, value.replaceAll("__prefix__", index));
    }
  }
  const row = copy.querySelector("tr");
  table.tBodies[0].append(copy);
  total.value = Number(index) + 1;
  offerInputs(row);
  row.querySelector("input[name$='-name']")?.focus();
}

if (table) {
  for (const row of table.tBodies[0].rows) offerInputs(row);
  table.addEventListener("change", (event) => {
    const row = event.target.closest("tr");
    if (event.target.matches("select.param-node")) offerInputs(row);
    if (event.target.matches("select.param-input")) inputPicked(row);
  });
  const button = document.getElementById("add-parameter");
  const template = document.getElementById("parameter-row");
  const total = table.closest("form").querySelector("input[name$='-TOTAL_FORMS']");
  if (button && template && total) {
    button.hidden = false;
    button.addEventListener("click", () => addRow(template, total));
  }
}
