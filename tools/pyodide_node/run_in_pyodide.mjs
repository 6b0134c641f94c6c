// Run a Python script inside Pyodide 0.27.7 under Node.js, with the repository mounted.
//
//   node tools/pyodide_node/run_in_pyodide.mjs --index-url DIR --repo DIR --script FILE
//        [--packages numpy,openblas] [--mount HOST:GUEST ...] [-- script args...]
//
// DIR (--index-url) holds Pyodide's core files (from the npm package pyodide@0.27.7) plus the
// wheels named in its pyodide-lock.json; prepare it with tools/pyodide_node/prepare_assets.py.
// The repository is mounted read-only-in-spirit at /repo (NODEFS) and put first on sys.path, so
// the script imports the same `app` package the tests use. --packages takes Pyodide package names
// and/or paths of wheels (e.g. a built app wheel). stdout/stderr pass through; the exit code is
// the script's SystemExit code (0 on normal completion, 1 on an uncaught Python error, whose
// traceback is printed).
import { pathToFileURL } from "node:url";
import path from "node:path";
import fs from "node:fs";

function parseArgs(argv) {
  const opts = { packages: ["numpy"], scriptArgs: [], mounts: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--") { opts.scriptArgs = argv.slice(i + 1); break; }
    const value = argv[i + 1];
    if (arg === "--index-url") opts.indexURL = value;
    else if (arg === "--repo") opts.repo = value;
    else if (arg === "--script") opts.script = value;
    else if (arg === "--packages") opts.packages = value.split(",").filter(Boolean);
    else if (arg === "--mount") opts.mounts.push(value);
    else throw new Error(`run_in_pyodide: unknown argument ${arg}`);
    i++;
  }
  for (const key of ["indexURL", "repo", "script"]) {
    if (!opts[key]) throw new Error(`run_in_pyodide: missing --${key === "indexURL" ? "index-url" : key}`);
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const indexURL = path.resolve(opts.indexURL) + path.sep;
const repo = path.resolve(opts.repo);
const { loadPyodide } = await import(pathToFileURL(path.join(indexURL, "pyodide.mjs")).href);
const pyodide = await loadPyodide({ indexURL, stdout: (s) => console.log(s), stderr: (s) => console.error(s) });
if (opts.packages.length) await pyodide.loadPackage(opts.packages, { messageCallback: () => {} });

pyodide.FS.mkdirTree("/repo");
pyodide.FS.mount(pyodide.FS.filesystems.NODEFS, { root: repo }, "/repo");
// --mount HOST:GUEST adds host folders outside the repo (e.g. the shared big fixtures a worktree's
// .cache/fixtures symlink points to: NODEFS resolves absolute links relative to its own mount).
for (const spec of opts.mounts) {
  const split = spec.lastIndexOf(":");
  if (split <= 0) throw new Error(`run_in_pyodide: --mount expects HOST:GUEST, got ${spec}`);
  const host = fs.realpathSync(spec.slice(0, split));
  const guest = spec.slice(split + 1);
  if (!guest.startsWith("/") || guest === "/repo" || guest.startsWith("/repo/")) {
    throw new Error(`run_in_pyodide: --mount guest path must be absolute and outside /repo, got ${guest}`);
  }
  pyodide.FS.mkdirTree(guest);
  pyodide.FS.mount(pyodide.FS.filesystems.NODEFS, { root: host }, guest);
}

const scriptPath = path.resolve(opts.script);
const source = fs.readFileSync(scriptPath, "utf8");
pyodide.globals.set("__vitrine_argv", pyodide.toPy([scriptPath, ...opts.scriptArgs]));
pyodide.globals.set("__vitrine_source", source);
pyodide.globals.set("__vitrine_path", scriptPath);
// SystemExit is caught in Python: letting it escape makes Pyodide rethrow it outside our promise.
const exitCode = pyodide.runPython(`
import sys, traceback
sys.path.insert(0, "/repo")
sys.argv = list(__vitrine_argv)
def __vitrine_run():
    try:
        exec(compile(__vitrine_source, __vitrine_path, "exec"), {"__name__": "__main__", "__file__": __vitrine_path})
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        return 1
    return 0
__vitrine_run()
`);
process.exit(exitCode);
