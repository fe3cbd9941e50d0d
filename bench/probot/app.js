// Probot's no-op app: Probot verifies the signature and dispatches the event to no handler.
export default () => {};
