// Forms marked data-confirm="question" ask before submitting (CSP forbids inline onsubmit).
document.addEventListener("submit", (event) => {
  const question = event.target.dataset?.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});
