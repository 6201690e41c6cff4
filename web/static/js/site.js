// cardsvc: the only script of every page, loaded with `defer` from /static (the CSP forbids
// inline scripts). Pages work without it; it only adds what plain HTML cannot do:
//
//   <button data-copy-target="ID" data-copied-text="Copied">   copies #ID's text
//   <span data-deadline-ms="UNIX_MS" data-expired-text="...">  counts down to the deadline
//   <div data-poll-url="/orders/1/state" data-poll-state="pending">
//        asks the URL (JSON {"state": "..."}) every few seconds and reloads the page once the
//        state differs; it backs off on errors and gives up after data-poll-max tries
//   <section data-progress-url="/console/batches/7/progress" data-progress-state="importing">
//        with a <progress> and a [data-progress-text] element inside: asks the URL each second
//        (JSON {"state", "processed", "total"}), moves the bar and the text, and reloads the
//        page once the state is no longer the given one
//
// It writes text with textContent only: the CSP's Trusted Types rule makes innerHTML fail.
"use strict";

(function () {
  function announce(button, text) {
    var original = button.textContent;
    button.textContent = text;
    button.setAttribute("aria-live", "polite");
    window.setTimeout(function () { button.textContent = original; }, 2000);
  }

  function selectText(element) {
    var range = document.createRange();
    range.selectNodeContents(element);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function setUpCopy(button) {
    button.addEventListener("click", function () {
      var target = document.getElementById(button.getAttribute("data-copy-target"));
      if (!target) { return; }
      var text = target.textContent.trim();
      var copied = button.getAttribute("data-copied-text") || "OK";
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(
          function () { announce(button, copied); },
          function () { selectText(target); });
      } else {
        selectText(target);
      }
    });
  }

  function twoDigits(n) { return (n < 10 ? "0" : "") + n; }

  function setUpCountdown(element) {
    var deadline = Number(element.getAttribute("data-deadline-ms"));
    if (!isFinite(deadline)) { return; }
    function tick() {
      var left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
      if (left === 0) {
        element.textContent = element.getAttribute("data-expired-text") || "0:00";
        element.classList.add("is-expired");
        return;
      }
      var hours = Math.floor(left / 3600);
      var minutes = Math.floor((left % 3600) / 60);
      var seconds = left % 60;
      element.textContent = (hours ? hours + ":" + twoDigits(minutes) : String(minutes)) +
        ":" + twoDigits(seconds);
      window.setTimeout(tick, 1000 - (Date.now() % 1000));
    }
    tick();
  }

  function setUpPoll(element) {
    var url = element.getAttribute("data-poll-url");
    var state = element.getAttribute("data-poll-state");
    var left = Number(element.getAttribute("data-poll-max") || 150);
    var delay = 2000;
    function poll() {
      if (left <= 0) { return; }
      if (document.hidden) { window.setTimeout(poll, delay); return; }
      left -= 1;
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (response) {
          if (!response.ok) { throw new Error(String(response.status)); }
          return response.json();
        })
        .then(function (body) {
          if (body && body.state && body.state !== state) {
            window.location.reload();
            return;
          }
          delay = 2000;
          window.setTimeout(poll, delay);
        })
        .catch(function () {
          delay = Math.min(delay * 2, 30000);
          window.setTimeout(poll, delay);
        });
    }
    window.setTimeout(poll, delay);
  }

  function setUpProgress(section) {
    var url = section.getAttribute("data-progress-url");
    var state = section.getAttribute("data-progress-state");
    var bar = section.querySelector("progress");
    var text = section.querySelector("[data-progress-text]");
    var pattern = text ? text.getAttribute("data-progress-text") : null;
    var delay = 1000;
    var left = 3600;
    function grouped(n) { return Number(n).toLocaleString(); }
    function poll() {
      if (left <= 0) { return; }
      if (document.hidden) { window.setTimeout(poll, delay); return; }
      left -= 1;
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (response) {
          if (!response.ok) { throw new Error(String(response.status)); }
          return response.json();
        })
        .then(function (body) {
          if (body.state !== state) { window.location.reload(); return; }
          if (bar) {
            bar.max = Math.max(1, Number(body.total) || 1);
            bar.value = Number(body.processed) || 0;
          }
          if (text && pattern) {
            text.textContent = pattern.replace("%(done)s", grouped(body.processed))
              .replace("%(total)s", body.total ? grouped(body.total) : "?");
          }
          delay = 1000;
          window.setTimeout(poll, delay);
        })
        .catch(function () {
          delay = Math.min(delay * 2, 30000);
          window.setTimeout(poll, delay);
        });
    }
    window.setTimeout(poll, delay);
  }

  // <div data-pow-url="/v1/shop/challenge"> with a hidden input named "challenge": fetches a
  // proof-of-work challenge, finds n with SHA-256(salt + n) == challenge (crypto.subtle, in
  // chunks so the page stays responsive) and fills the input with the base64 payload the
  // server verifies. The form's submit button waits until it is done.
  function hex(buffer) {
    var bytes = new Uint8Array(buffer);
    var out = "";
    for (var i = 0; i < bytes.length; i += 1) { out += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16); }
    return out;
  }

  function setUpPow(element) {
    var input = element.querySelector("input[name=challenge]");
    var status = element.querySelector(".pow-status");
    var form = element.closest("form");
    var submit = form ? form.querySelector("button[type=submit]") : null;
    if (!input || !window.crypto || !window.crypto.subtle) { return; }
    if (submit) { submit.disabled = true; }
    function finish(ok) {
      if (status) {
        status.textContent = element.getAttribute(ok ? "data-pow-done" : "data-pow-failed") || "";
        status.classList.add(ok ? "is-done" : "is-failed");
      }
      if (submit) { submit.disabled = false; }
    }
    fetch(element.getAttribute("data-pow-url"), { credentials: "same-origin" })
      .then(function (response) { return response.json(); })
      .then(function (c) {
        var encoder = new TextEncoder();
        var chunk = 2000;
        function search(start) {
          if (start > c.maxnumber) { finish(false); return; }
          var jobs = [];
          for (var n = start; n < Math.min(start + chunk, c.maxnumber + 1); n += 1) {
            jobs.push(window.crypto.subtle.digest("SHA-256", encoder.encode(c.salt + n)));
          }
          Promise.all(jobs).then(function (digests) {
            for (var i = 0; i < digests.length; i += 1) {
              if (hex(digests[i]) === c.challenge) {
                input.value = window.btoa(JSON.stringify({ algorithm: c.algorithm,
                  challenge: c.challenge, number: start + i, salt: c.salt, signature: c.signature }));
                finish(true);
                return;
              }
            }
            window.setTimeout(function () { search(start + chunk); }, 0);
          }, function () { finish(false); });
        }
        search(0);
      })
      .catch(function () { finish(false); });
  }

  function each(selector, setUp) {
    var found = document.querySelectorAll(selector);
    for (var i = 0; i < found.length; i += 1) { setUp(found[i]); }
  }

  each("[data-copy-target]", setUpCopy);
  each("[data-deadline-ms]", setUpCountdown);
  each("[data-poll-url]", setUpPoll);
  each("[data-progress-url]", setUpProgress);
  each("[data-pow-url]", setUpPow);
}());
