// A local instance's page: keep the live console scrolled to its newest line, unless
// the reader scrolled up to read older ones.
const FOLLOW_SLACK_PX = 40;
let following = true;

function consoleElement() {
  return document.querySelector("pre.console");
}

function follow() {
  const element = consoleElement();
  if (!element) return;
  element.addEventListener("scroll", () => {
    following = element.scrollTop + element.clientHeight >= element.scrollHeight - FOLLOW_SLACK_PX;
  });
  if (following) element.scrollTop = element.scrollHeight;
}

document.addEventListener("live:swapped", (event) => {
  if (consoleElement()?.id === event.detail.target) follow();
});
follow();
