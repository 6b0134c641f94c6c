// Loads PyScript and keeps the page free of string-eval so the CSP can omit 'unsafe-eval'.
//
// PyScript ships one default *worker* hook (hooks.worker.onBeforeRunAsync, registering a
// `_pyscript` module for pyscript.fs). Worker hooks cross into the worker as source text and are
// revived with Function(), which a CSP without 'unsafe-eval' blocks. Our engine worker never
// imports `pyscript` (it only uses `polyscript.xworker`), so the hook is dropped before PyScript
// starts the worker (module evaluation order: core.js, then this body, then PyScript's async
// bootstrap). See docs/build.md "Content-Security-Policy".
import { hooks } from "../pyscript/core.js";

hooks.worker.onBeforeRunAsync.clear();
