// Bearer token for mutating requests, kept in sessionStorage (per tab, gone
// when the tab closes). When a request needs a token that we don't have (or
// the server answered 401), `requestToken()` asks whoever listens — the
// TokenDialog — and resolves once the operator has entered one.

const KEY = 'contimg.token';

type Listener = () => void;
const listeners = new Set<Listener>();

interface Pending {
  resolve: (token: string) => void;
  reject: (err: Error) => void;
}
let pending: Pending[] = [];
let promptReason: string | null = null;

function emit() {
  for (const l of listeners) l();
}

export function getToken(): string | null {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null;
  }
}

export function setToken(token: string | null) {
  try {
    if (token) sessionStorage.setItem(KEY, token);
    else sessionStorage.removeItem(KEY);
  } catch {
    /* storage unavailable: keep going without persistence */
  }
  emit();
}

export function subscribeAuth(l: Listener): () => void {
  listeners.add(l);
  return () => listeners.delete(l);
}

/** Non-null while the token prompt should be shown; the value is the reason. */
export function getPromptReason(): string | null {
  return promptReason;
}

export class TokenCancelled extends Error {
  constructor() {
    super('Sign-in cancelled');
    this.name = 'TokenCancelled';
  }
}

/** Open the token prompt (if not already open) and wait for a token. */
export function requestToken(reason: string): Promise<string> {
  promptReason = reason;
  const p = new Promise<string>((resolve, reject) => pending.push({ resolve, reject }));
  emit();
  return p;
}

/** Open the prompt without anything waiting on it (the "Sign in" button). */
export function openTokenPrompt(reason = 'Enter the API token to enable control actions.') {
  promptReason = reason;
  emit();
}

export function submitToken(token: string) {
  setToken(token);
  promptReason = null;
  const waiting = pending;
  pending = [];
  waiting.forEach((p) => p.resolve(token));
  emit();
}

export function cancelTokenPrompt() {
  promptReason = null;
  const waiting = pending;
  pending = [];
  waiting.forEach((p) => p.reject(new TokenCancelled()));
  emit();
}
