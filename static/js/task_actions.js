// Task buttons that only make sense in some states (Retry: failed or canceled;
// Cancel: not finished yet) follow their task's live state: an element with
// data-show-when="failed canceled" and data-status-from="<element id>" is shown
// while the status badge inside that element says one of those states. The
// badges are swapped in by live.js, which announces each swap.

function statusIn(element) {
  const badge = element?.querySelector(".badge[class*='status-']");
  const name = badge && [...badge.classList].find((c) => c.startsWith("status-"));
  return name ? name.slice("status-".length) : null;
}

function follow() {
  for (const action of document.querySelectorAll("[data-show-when][data-status-from]")) {
    const status = statusIn(document.getElementById(action.dataset.statusFrom));
    if (status) action.hidden = !action.dataset.showWhen.split(" ").includes(status);
  }
}

document.addEventListener("live:swapped", follow);
follow();
