// The public GraphQL API, as any frontend uses it: queries and mutations over HTTP POST,
// videoStatus over WebSocket (graphql-transport-ws, through the vendored graphql-ws client).

const ENDPOINT = "/graphql";

export const VIDEO_FIELDS = `uuid prompt model status progress videoUrl thumbnailUrl duration resolution
  aspectRatio creditsUsed createdAt completedAt generationTime errorMessage`;

export const DOCUMENTS = {
  me: `query ConsoleMe { me { email credits { available frozen used total } } }`,
  models: `query ConsoleModels { models { id name provider modes durations resolutions
    aspectRatios enabled prices { duration quality credits } } }`,
  videos: `query ConsoleVideos($page: Int!, $pageSize: Int!) {
    videos(page: $page, pageSize: $pageSize) { total page pageSize videos { ${VIDEO_FIELDS} } } }`,
  video: `query ConsoleVideo($uuid: ID!) { video(uuid: $uuid) { ${VIDEO_FIELDS} } }`,
  generate: `mutation ConsoleGenerate($input: GenerateVideoInput!) { generateVideo(input: $input) { ${VIDEO_FIELDS} } }`,
  remove: `mutation ConsoleDelete($uuid: ID!) { deleteVideo(uuid: $uuid) { uuid deleted } }`,
  cancel: `mutation ConsoleCancel($uuid: ID!) { cancelVideo(uuid: $uuid) { outcome video { ${VIDEO_FIELDS} } } }`,
  history: `query ConsoleHistory($page: Int!, $pageSize: Int!) {
    creditHistory(page: $page, pageSize: $pageSize) {
      total page pageSize transactions { id transType credits balanceAfter videoUuid createdAt } } }`,
  status: `subscription ConsoleStatus($uuid: ID!) { videoStatus(uuid: $uuid) { ${VIDEO_FIELDS} } }`,
};

/** A GraphQL error with its stable code (extensions.code) and, for bad input, the field it names. */
export class ApiError extends Error {
  constructor(message, { code = "ERROR", field = null } = {}) {
    super(message);
    this.code = code;
    this.field = field;
  }
}

function firstError(errors) {
  const error = errors[0];
  const extensions = error.extensions || {};
  return new ApiError(error.message, { code: extensions.code || "ERROR", field: extensions.field || null });
}

/** Runs one operation over HTTP; resolves to `data`, rejects with an ApiError. */
export async function request(key, query, variables = {}) {
  const headers = { "Content-Type": "application/json", Accept: "application/json" };
  if (key) headers.Authorization = `Bearer ${key}`;
  let response;
  try {
    response = await fetch(ENDPOINT, { method: "POST", headers, body: JSON.stringify({ query, variables }) });
  } catch {
    throw new ApiError("The gateway cannot be reached.", { code: "NETWORK" });
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(`The gateway answered ${response.status}.`, { code: "NETWORK" });
  }
  if (body.errors && body.errors.length) throw firstError(body.errors);
  return body.data;
}

/**
 * The subscription client. It reconnects after a dropped connection (forever, backing off to 2 s)
 * and re-sends every active subscription; `onReconnect` lets the page re-read what it shows,
 * since videoStatus starts with the video as it is now, nothing final is lost while away.
 * A 4403 close (the key was refused) is final: graphql-ws would retry it.
 */
export function subscriptions(key, { onReconnect, onRefused, onState }) {
  const url = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}${ENDPOINT}`;
  return globalThis.graphqlWs.createClient({
    url,
    connectionParams: () => ({ Authorization: `Bearer ${key}` }),
    lazy: true,
    keepAlive: 10_000,
    retryAttempts: Infinity,
    retryWait: (retries) => new Promise((resolve) => setTimeout(resolve, Math.min(250 * 2 ** retries, 2000))),
    shouldRetry: (event) => {
      if (event && event.code === 4403) {
        onRefused();
        return false;
      }
      return true;
    },
    on: {
      connected: (_socket, _payload, wasRetry) => {
        onState("connected");
        if (wasRetry) onReconnect();
      },
      closed: () => onState("reconnecting"),
    },
  });
}
