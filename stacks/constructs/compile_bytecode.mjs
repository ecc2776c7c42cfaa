// Compile every .py under a directory to CPython 3.12 bytecode with CPython 3.12 itself, run as WebAssembly
// (Pyodide, pinned in package.json), for hosts whose own Python is another version. Called by
// stacks/constructs/bytecode.py; see its docstring for why and for the checks made on the result.
//
// usage: node compile_bytecode.mjs DIR DDIR
//   DIR   the bundled asset on this machine
//   DDIR  the directory the files will live in at run time (/var/task), written into the code objects
// Prints one JSON line: {"version", "cache_tag", "magic", "compiled", "failed": [...]}. Exit 0 even when
// some files fail to compile (the caller decides); exit 1 when Pyodide cannot run at all.
import { loadPyodide } from "pyodide";

const [dir, ddir] = process.argv.slice(2);
if (!dir || !ddir) {
  console.error("usage: node compile_bytecode.mjs DIR DDIR");
  process.exit(2);
}

const py = await loadPyodide();
py.FS.mkdirTree("/asset");
py.FS.mount(py.FS.filesystems.NODEFS, { root: dir }, "/asset");
py.globals.set("ddir", ddir);
const report = py.runPython(`
import importlib.util, json, os, py_compile, sys

compiled, failed = 0, []
for root, dirs, files in os.walk("/asset"):
    dirs[:] = sorted(d for d in dirs if d != "__pycache__")
    for name in sorted(files):
        if not name.endswith(".py"):
            continue
        source = os.path.join(root, name)
        shown = ddir + source[len("/asset"):]
        try:
            py_compile.compile(source, dfile=shown, doraise=True,
                               invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
            compiled += 1
        except (py_compile.PyCompileError, SyntaxError, ValueError) as e:
            failed.append({"file": source[len("/asset/"):], "error": str(e).strip().splitlines()[-1][:200]})
json.dumps({
    "version": sys.version.split()[0],
    "cache_tag": sys.implementation.cache_tag,
    "magic": importlib.util.MAGIC_NUMBER.hex(),
    "compiled": compiled,
    "failed": failed,
})
`);
console.log(report);
