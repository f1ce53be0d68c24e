/** Where an agent keeps its files: shared by the agent that writes them and the CLI that finds them. */

/** The agent's state directory unless its config or FLEXBSO_STATE_DIR says otherwise. */
export const DEFAULT_STATE_DIR = "/var/lib/flexbso";

/** The file in the agent's run dir holding the URL it listens on (a loopback agent's endpoint for the CLI). */
export const LOCAL_URL_FILE = "agent.url";
/** Beside LOCAL_URL_FILE when the agent serves HTTPS: its certificate's SHA-256 fingerprint, which the local CLI pins. */
export const LOCAL_FINGERPRINT_FILE = "agent.fingerprint";
