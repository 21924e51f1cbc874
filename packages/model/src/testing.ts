/**
 * `@forge/model/testing`: test support for forge's own packages — a local stand-in for the
 * Hugging Face hub. Not a stable API.
 */
export {
  FIXTURE_COMMIT,
  type FixtureRepo,
  gitBlobId,
  type HubRequest,
  type HubServer,
  type HubServerOptions,
  sha256Of,
  startHubServer,
} from "./testing/hub-server.js";
export { writeSparseCheckpoint } from "./testing/sparse-checkpoint.js";
