// The terminal page's camera scanner (loaded by that page only, from /static: the CSP forbids
// inline scripts). Where the browser has BarcodeDetector (Chromium on Android and desktop,
// Safari 17+), the "Scan with the camera" button appears; it opens the back camera, looks for a
// QR code or barcode a few times a second, puts its text into the code field and stops the
// camera. Without BarcodeDetector, or when the camera is refused, the button stays hidden and
// the code is typed. Elements are made with createElement and text set with textContent only
// (Trusted Types: no innerHTML).
"use strict";

(function () {
  var button = document.querySelector("[data-scan-target]");
  var box = document.querySelector("[data-scanner]");
  if (!button || !box || !("BarcodeDetector" in window) || !navigator.mediaDevices) { return; }
  var input = document.getElementById(button.getAttribute("data-scan-target"));
  var label = button.textContent;
  var stream = null;
  var timer = null;
  var video = null;

  function stop() {
    if (timer) { window.clearInterval(timer); timer = null; }
    if (stream) { stream.getTracks().forEach(function (track) { track.stop(); }); stream = null; }
    if (video) { box.removeChild(video); video = null; }
    box.hidden = true;
    button.textContent = label;
  }

  function start() {
    var detector = new window.BarcodeDetector();
    navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false })
      .then(function (opened) {
        stream = opened;
        video = document.createElement("video");
        video.setAttribute("playsinline", "");
        video.muted = true;
        video.srcObject = stream;
        box.appendChild(video);
        box.hidden = false;
        button.textContent = button.getAttribute("data-scan-stop");
        return video.play();
      })
      .then(function () {
        timer = window.setInterval(function () {
          if (!video) { return; }
          detector.detect(video).then(function (found) {
            if (found.length && found[0].rawValue) {
              input.value = found[0].rawValue;
              stop();
              input.focus();
            }
          }).catch(function () {});
        }, 300);
      })
      .catch(function () { stop(); button.hidden = true; });
  }

  button.hidden = false;
  button.addEventListener("click", function () { if (stream) { stop(); } else { start(); } });
}());
