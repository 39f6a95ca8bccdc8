// Exam slip QR code: the print button (a static file, as the Content-Security-Policy allows no inline script).
(function () {
  "use strict";
  var button = document.getElementById("print-slip");
  if (button) { button.addEventListener("click", function () { window.print(); }); }
})();
