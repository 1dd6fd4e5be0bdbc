// Validate glTF 2.0 assets (.glb / .gltf) with the Khronos glTF validator (npm gltf-validator).
//
//   node tests/gltf_validator/validate.mjs FILE [FILE ...]
//
// Prints one JSON array with the validator's report for each file, in order (issues.numErrors,
// issues.numWarnings, issues.messages, info, validatorVersion, ...). External resources of a .gltf
// (buffers, images) are read relative to the file. Exit status: 0 when no file has errors,
// 1 when some file has errors (the reports are still printed), 2 when a file cannot be read or is
// not glTF at all.
import { readFile } from "node:fs/promises";
import path from "node:path";
import validator from "gltf-validator";

async function validate(file) {
  const data = new Uint8Array(await readFile(file));
  const report = await validator.validateBytes(data, {
    uri: path.basename(file),
    maxIssues: 0, // report every issue
    writeTimestamp: false,
    externalResourceFunction: async (uri) =>
      new Uint8Array(await readFile(path.resolve(path.dirname(file), decodeURIComponent(uri)))),
  });
  return report;
}

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node validate.mjs FILE.glb|FILE.gltf [...]");
  process.exit(2);
}
const reports = [];
for (const file of files) {
  try {
    reports.push(await validate(file));
  } catch (error) {
    console.error(`${file}: ${error}`);
    process.exit(2);
  }
}
console.log(JSON.stringify(reports, null, 2));
process.exit(reports.some((r) => r.issues.numErrors > 0) ? 1 : 0);
