// Boot guard for the Vitrine page (classic script, no inline code so the CSP stays strict).
// * file:// -> show the "serve me" notice and stop.
// * no WebAssembly (or no WebAssembly SIMD) -> say so in words.
// * the engine must report "ready" within data-boot-timeout-ms, otherwise the page says it failed
//   instead of spinning forever; PyScript error banners also flip the state to "error".
(function () {
  "use strict";
  var body = document.body;
  var statusLine = document.getElementById("engine-status");

  function fail(message) {
    body.setAttribute("data-engine-state", "error");
    body.setAttribute("data-engine-error", message);
    statusLine.textContent = message;
  }

  if (location.protocol === "file:") {
    document.getElementById("file-notice").hidden = false;
    fail("Vitrine cannot run from a file:// page. Serve the folder (see the command below) and open http://127.0.0.1:8000/.");
    return;
  }

  // Smallest module with a SIMD instruction (a function returning v128.const 0): it validates only
  // where WebAssembly SIMD is supported.
  var simdModule = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 22, 1, 20, 0, 253, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 11]);
  if (typeof WebAssembly !== "object") {
    fail("This browser has no WebAssembly, which Vitrine needs. Use a current Chrome, Edge, Firefox or Safari.");
    return;
  }
  if (!WebAssembly.validate(simdModule)) {
    fail("This browser lacks WebAssembly SIMD, which Vitrine needs. Update the browser (Chrome 91+, Firefox 89+, Safari 16.4+).");
    return;
  }

  var timeoutMs = parseInt(body.getAttribute("data-boot-timeout-ms") || "90000", 10);
  setTimeout(function () {
    if (body.getAttribute("data-engine-state") === "booting") {
      fail("The engine did not start within " + Math.round(timeoutMs / 1000) + " s. Reload the page; if it keeps failing, the site files may be incomplete.");
    }
  }, timeoutMs);

  // The PyScript loader (or a module it imports) failed to load, e.g. an integrity mismatch.
  var loader = document.querySelector('script[type="module"][src$="pyscript-setup.js"]');
  if (loader) {
    loader.addEventListener("error", function () {
      fail("The page's scripts failed to load or did not match their integrity hashes. Reload; if it persists, the site files are damaged.");
    });
  }

  // PyScript reports interpreter / script failures (e.g. a missing or tampered wheel) as
  // .py-error elements; turn the first one into the page's error state.
  new MutationObserver(function () {
    var banner = document.querySelector(".py-error");
    if (banner && body.getAttribute("data-engine-state") !== "error") {
      fail("The engine failed to start: " + (banner.textContent || "unknown error").trim().split("\n").slice(-1)[0]);
    }
  }).observe(document.documentElement, { childList: true, subtree: true });
})();
