#!/usr/bin/env node
// Checks Mermaid diagrams with Mermaid's own parser (the npm package `mermaid`), without a
// browser: jsdom supplies the window Mermaid's sanitizer (DOMPurify) needs when it loads.
//
//   node ci/mermaid-parse.mjs FILE...     one diagram per file
//   node ci/mermaid-parse.mjs < FILE      one diagram on standard input
//
// Prints one line per diagram, `NAME: ok TYPE` (gantt charts add `, N tasks`), and exits 1
// after printing `NAME: ERROR` for any diagram that does not parse. Gantt charts are also
// laid out (dates computed), which is where Mermaid reports dates it cannot read.
import { readFileSync } from 'node:fs';
import { JSDOM } from 'jsdom';

const { window } = new JSDOM('');
globalThis.window = window;
globalThis.document = window.document;
// Imported only now: DOMPurify picks up the window when Mermaid loads it.
const { default: mermaid } = await import('mermaid');

/** The diagram's type and, for a gantt chart, its task count; throws on a syntax error. */
async function check(text) {
  const { diagramType } = await mermaid.parse(text);
  if (diagramType !== 'gantt') {
    return diagramType;
  }
  const diagram = await mermaid.mermaidAPI.getDiagramFromText(text);
  return `${diagramType}, ${diagram.db.getTasks().length} tasks`;
}

const inputs = process.argv.length > 2
  ? process.argv.slice(2).map((path) => [path, readFileSync(path, 'utf8')])
  : [['stdin', readFileSync(0, 'utf8')]];
let failed = false;
for (const [name, text] of inputs) {
  try {
    console.log(`${name}: ok ${await check(text)}`);
  } catch (error) {
    failed = true;
    console.log(`${name}: ERROR ${error?.message ?? error}`);
  }
}
process.exit(failed ? 1 : 0);
