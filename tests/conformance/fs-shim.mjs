// Node 20 lacks fs.globSync (Node 22); re-export node:fs with one from the glob package.
export * from 'node:fs';
import { globSync as glob } from 'glob';
export function globSync(pattern, options = {}) { return glob(pattern, { cwd: options.cwd }); }
