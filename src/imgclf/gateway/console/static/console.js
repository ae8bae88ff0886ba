/* imgclf console: the CSRF header on htmx requests, keyboard shortcuts, grid selection, drag and drop.
   Served from /ui/static (the Content-Security-Policy allows no inline script). */
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = csrfToken();
  });

  function typingIn(element) {
    if (!element || element === document.body) return false;
    if (element.isContentEditable || element.tagName === "TEXTAREA" || element.tagName === "SELECT") return true;
    return element.tagName === "INPUT" && ["checkbox", "radio", "button", "submit"].indexOf(element.type) < 0;
  }

  function interactive(element) {
    return element && element !== document.body && /^(A|BUTTON|INPUT|SELECT|TEXTAREA|SUMMARY)$/.test(element.tagName);
  }

  // Keys name elements by data-key: digits pick a class, Enter confirms, n focuses the new-class field,
  // s skips, u undoes, a selects all (grid). Enter and Space keep their usual meaning on a focused control.
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    var active = document.activeElement;
    if (typingIn(active)) {
      if (event.key === "Escape") active.blur();
      return;
    }
    if ((event.key === "Enter" || event.key === " ") && interactive(active)) return;
    var target = document.querySelector('[data-key="' + CSS.escape(event.key) + '"]');
    if (!target || target.disabled) return;
    event.preventDefault();
    if (target.tagName === "INPUT") target.focus();
    else target.click();
  });

  // After the review card is replaced, move focus to its heading so screen readers announce the new item
  // (and keys keep working: the heading is not a control).
  document.addEventListener("htmx:afterSettle", function (event) {
    var heading = document.getElementById("card-title");
    if (heading && event.detail.target && event.detail.target.id === "workspace") {
      heading.setAttribute("tabindex", "-1");
      heading.focus({ preventScroll: true });
    }
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-select-all]") : null;
    if (!button || !button.form) return;
    var boxes = Array.prototype.slice.call(button.form.querySelectorAll('input[name="ids"]'));
    var all = boxes.every(function (box) { return box.checked; });
    boxes.forEach(function (box) { box.checked = !all; });
  });

  // Classify: files dropped on the drop zone go into its file input.
  function setUpDropZone(zone) {
    var input = document.getElementById(zone.getAttribute("data-drop-for"));
    var list = zone.querySelector("[data-file-names]");
    if (!input) return;
    function show() {
      if (!list) return;
      var names = Array.prototype.map.call(input.files, function (file) { return file.name; });
      list.textContent = names.length ? names.join(", ") : "";
    }
    zone.addEventListener("dragover", function (event) {
      event.preventDefault();
      zone.classList.add("dragging");
    });
    zone.addEventListener("dragleave", function () { zone.classList.remove("dragging"); });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      zone.classList.remove("dragging");
      if (event.dataTransfer && event.dataTransfer.files.length) {
        input.files = event.dataTransfer.files;
        show();
      }
    });
    input.addEventListener("change", show);
  }

  function ready() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-drop-for]"), setUpDropZone);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready);
  else ready();
})();
