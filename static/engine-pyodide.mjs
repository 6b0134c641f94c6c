// The engine worker's Pyodide loader (config/engine.json "interpreter"): PyScript imports this
// module in the worker and calls its loadPyodide(options) exactly as it would call pyodide.mjs's.
// It adds what the start-up benchmark needs to see inside the worker (performance marks, read back
// by workers/engine.py boot_report(); see docs/build.md "Start-up") and fixes indexURL to the
// pyodide/ folder (PyScript derives it from this module's own URL).
import { loadPyodide as loadPyodideRuntime, version } from "../pyodide/pyodide.mjs";

export { version };

export async function loadPyodide(options) {
  performance.mark("vitrine:pyodide-start");
  const pyodide = await loadPyodideRuntime({ ...options, indexURL: new URL("../pyodide/", import.meta.url).href });
  performance.mark("vitrine:pyodide-loaded");
  return pyodide;
}
