// curate view: the only script. Loads the filters/charts fragment (server-escaped HTML) and submits
// the filter form when a select changes. No dependencies, no inline script (the CSP forbids it).
"use strict";
(function () {
  function wire(root) {
    root.querySelectorAll("form.filters select, form.filters input[type=checkbox]").forEach(function (el) {
      el.addEventListener("change", function () { el.form.requestSubmit(); });
    });
  }
  document.querySelectorAll("[data-fragment]").forEach(function (el) {
    fetch(el.getAttribute("data-fragment"), { headers: { "Accept": "text/html" } })
      .then(function (r) { if (!r.ok) throw new Error(r.status + " " + r.statusText); return r.text(); })
      .then(function (html) { el.innerHTML = html; el.setAttribute("data-loaded", "1"); wire(el); })
      .catch(function (e) { el.textContent = "could not load filters and charts: " + e.message; el.setAttribute("data-loaded", "error"); });
  });
})();
