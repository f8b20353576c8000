// The admin HTTP API, as one bearer token sees it.
//
// Every answer that is not a success becomes an ApiError carrying the API's
// {code, message, field?}, so that forms can show it beside its field.

export class ApiError extends Error {
  constructor(status, { code, message, field }) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

export class Api {
  constructor(token, { onUnauthorized } = {}) {
    this.token = token;
    this.onUnauthorized = onUnauthorized;
  }

  async request(method, path, body, { accept = "application/json", query } = {}) {
    const url = new URL(`/api/v1${path}`, location.origin);
    for (const [key, value] of query ?? []) {
      if (value !== "" && value != null) url.searchParams.append(key, value);
    }
    const headers = { Authorization: `Bearer ${this.token}`, Accept: accept };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let answer;
    try {
      answer = await fetch(url, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store",
      });
    } catch {
      throw new ApiError(0, { code: "network", message: "The server cannot be reached. Try again in a moment." });
    }
    if (answer.ok) {
      if (answer.status === 204) return null;
      return accept === "application/json" ? answer.json() : answer.blob();
    }
    let error = { code: `http_${answer.status}`, message: `The server answered ${answer.status}.` };
    try {
      const parsed = await answer.json();
      if (parsed?.error?.message) error = parsed.error;
    } catch {
      // not JSON: keep the status
    }
    const failure = new ApiError(answer.status, error);
    if (answer.status === 401) this.onUnauthorized?.(failure);
    throw failure;
  }

  get(path, query) { return this.request("GET", path, undefined, { query }); }
  post(path, body) { return this.request("POST", path, body ?? {}); }
  patch(path, body) { return this.request("PATCH", path, body); }
  put(path, body) { return this.request("PUT", path, body); }
  delete(path) { return this.request("DELETE", path); }

  // A file the server makes (CSV), saved through a Blob with the bearer header.
  async download(path, query, accept, filename) {
    const blob = await this.request("GET", path, undefined, { accept, query });
    const url = URL.createObjectURL(blob);
    const link = document.createElement("a");
    link.href = url;
    link.download = filename;
    link.hidden = true;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    return blob;
  }
}

export const enc = encodeURIComponent;
