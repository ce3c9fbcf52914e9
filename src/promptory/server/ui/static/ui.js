// promptory web UI: small conveniences on top of pages that work without JavaScript.
// "/" focuses the search box; Ctrl+Enter (or Cmd+Enter) in the variables box renders;
// the new key's box is selected for copying.
document.addEventListener("keydown", function (event) {
  var target = event.target;
  var typing = target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT");
  if (event.key === "/" && !typing) {
    var search = document.getElementById("q");
    if (search) { event.preventDefault(); search.focus(); }
  }
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && target && target.id === "variables") {
    event.preventDefault();
    target.form.requestSubmit();
  }
});
document.addEventListener("DOMContentLoaded", function () {
  var secret = document.getElementById("secret");
  if (secret) { secret.focus(); secret.select(); }
  var bad = document.querySelector("pre.code .l.bad");
  if (bad && document.getElementById("render-error")) { bad.scrollIntoView({ block: "center" }); }
});
