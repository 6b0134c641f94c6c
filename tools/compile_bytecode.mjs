// Build step (build.py): boot the engine once in Pyodide 0.27.7 under Node.js and compile, with
// that same interpreter, the Python bytecode of every module the boot and a first classification
// import, so that the browser unmarshals .pyc files instead of compiling sources on every page load.
//
//   node tools/compile_bytecode.mjs --index-url DIR --job FILE.json
//
// DIR is the site's pyodide/ folder being built (core files, the verified wheels and the shipped
// pyodide-lock.json, whose entries name the app wheel). The job file (written by build.py) lists
// the packages to install, the worker glue, the demo files to exercise and where to write the
// archives; tools/compile_bytecode.py does the Python side (see its docstring). The host file
// system is mounted at /host, read for inputs and written only under the job's "out" folder.
import { pathToFileURL } from "node:url";
import path from "node:path";
import fs from "node:fs";

const args = process.argv.slice(2);
const option = (name) => {
  const index = args.indexOf(name);
  if (index < 0 || index + 1 >= args.length) throw new Error(`compile_bytecode: missing ${name}`);
  return args[index + 1];
};
const indexURL = path.resolve(option("--index-url")) + path.sep;
const jobPath = path.resolve(option("--job"));
const job = JSON.parse(fs.readFileSync(jobPath, "utf8"));

const { loadPyodide } = await import(pathToFileURL(path.join(indexURL, "pyodide.mjs")).href);
// PYTHONHASHSEED=0: set and frozenset constants are marshalled in hash order, so a fixed seed
// makes two builds write the same bytes.
const pyodide = await loadPyodide({ indexURL, env: { PYTHONHASHSEED: "0" },
                                    stdout: (line) => console.log(line), stderr: (line) => console.error(line) });
await pyodide.loadPackage(job.packages, { messageCallback: () => {} });
// The worker glue imports `polyscript.xworker` (PyScript's worker channel; progress events go
// nowhere here) and `polyscript.config` (the worker's config/engine.json: its deferred packages).
pyodide.registerJsModule("polyscript", { xworker: { sync: { on_progress: () => {} } },
                                        config: { deferred_packages: job.deferred_packages } });
pyodide.FS.mkdirTree("/host");
pyodide.FS.mount(pyodide.FS.filesystems.NODEFS, { root: "/" }, "/host");
pyodide.globals.set("job_path", "/host" + jobPath);
const script = fs.readFileSync(new URL("./compile_bytecode.py", import.meta.url), "utf8");
try {
  await pyodide.runPythonAsync(script, { filename: "tools/compile_bytecode.py" });
} catch (error) {
  console.error(String(error.message || error));
  process.exit(1);
}
process.exit(0);
