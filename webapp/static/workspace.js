// Copy buttons: <button data-copy="ELEMENT_ID" data-copied="Copied">. The page works without this.
document.addEventListener("click", function (event) {
  var button = event.target.closest("[data-copy]");
  if (!button) return;
  var source = document.getElementById(button.getAttribute("data-copy"));
  if (!source) return;
  var text = "value" in source ? source.value : source.textContent;
  var done = function () {
    var label = button.textContent;
    button.textContent = button.getAttribute("data-copied") || label;
    setTimeout(function () { button.textContent = label; }, 1500);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done);
  } else {
    if (source.select) source.select();
    document.execCommand("copy");
    done();
  }
});
