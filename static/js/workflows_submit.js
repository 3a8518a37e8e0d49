// Template submit form: show only the batch fields of the chosen "Runs" mode.
// Without JS every field shows and the server ignores the ones that don't apply.
const FIELDS = {
  count: ["count"],
  sweep: ["count", "sweep_parameter", "sweep_start"],
  list: ["list_parameter", "list_values"],
};
const ALL = ["count", "sweep_parameter", "sweep_start", "list_parameter", "list_values"];

function update(form) {
  const chosen = form.querySelector("input[name=mode]:checked");
  const shown = FIELDS[chosen ? chosen.value : "count"] || ALL;
  for (const name of ALL) {
    const field = form.querySelector(`.field-${name}`);
    if (field) field.hidden = !shown.includes(name);
  }
}

for (const form of document.querySelectorAll("form.submit-form")) {
  form.addEventListener("change", (event) => {
    if (event.target.name === "mode") update(form);
  });
  update(form);
}
