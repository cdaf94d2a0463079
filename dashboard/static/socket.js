// The live link to the hub: auth as the first message, snapshot on every (re)connect, backoff between tries.

const REFUSED = new Set([4401, 4403]);
const BACKOFF_MAX_MS = 15000;

export class HubSocket {
  constructor({ token, onMessage, onState }) {
    this.token = token;
    this.onMessage = onMessage;
    this.onState = onState;
    this.attempt = 0;
    this.ws = null;
    this.timer = null;
    this.stopped = false;
  }

  start() {
    this.stopped = false;
    this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, "bye");
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  open() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/ws/dashboard`);
    this.ws = ws;
    this.onState("connecting", this.attempt ? `reconnecting (try ${this.attempt + 1})` : "connecting…");
    ws.onopen = () => ws.send(JSON.stringify({ type: "auth", token: this.token }));
    ws.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (err) {
        console.error("dashboard: unreadable message", err);
        return;
      }
      if (message.type === "snapshot") {
        this.attempt = 0;
        this.onState("live", "live");
      }
      this.onMessage(message);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      if (REFUSED.has(event.code)) {
        this.stopped = true;
        this.onState("refused", event.reason || `refused (${event.code})`);
        return;
      }
      // Random first delay, then geometric growth up to a cap, so a restarted hub is not stampeded.
      const base = Math.min(BACKOFF_MAX_MS, 500 * 2 ** this.attempt);
      const delay = Math.round(base * (0.5 + Math.random() / 2));
      this.attempt += 1;
      this.onState("offline", `reconnecting in ${Math.ceil(delay / 1000)} s`);
      this.timer = setTimeout(() => this.open(), delay);
    };
  }
}
