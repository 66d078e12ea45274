// Validates Argo Rollouts objects with @kubernetes-models/argo-rollouts, whose models and
// validators are generated from Argo Rollouts' own API types
// (github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1): field types, enums and
// required fields. They do not refuse unknown fields; test_argo.py adds TypeScript's
// excess-property check on the same types for that.
//
//   node validate.mjs NODE_MODULES_DIR < objects.json
//
// reads a JSON array of objects and prints a JSON array with one entry per object:
// {"kind", "name", "error"}, error null when the object is valid.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.argv[2];
const models = await import(
  pathToFileURL(join(modules, "@kubernetes-models/argo-rollouts/argoproj.io/v1alpha1/index.js")).href
);
const objects = JSON.parse(readFileSync(0, "utf8"));
const results = objects.map((object) => {
  const name = object?.metadata?.name ?? null;
  const Model = models[object?.kind];
  if (object?.apiVersion !== "argoproj.io/v1alpha1" || typeof Model !== "function") {
    return { kind: object?.kind ?? null, name, error: `not an argoproj.io/v1alpha1 kind: ${object?.apiVersion} ${object?.kind}` };
  }
  try {
    new Model(object).validate();
    return { kind: object.kind, name, error: null };
  } catch (e) {
    return { kind: object.kind, name, error: String(e.message ?? e) };
  }
});
process.stdout.write(JSON.stringify(results) + "\n");
