// What the page shows when the host's data is missing: the homeserver and
// the Matrix ID worked out the way the service itself works them out
// (homeserver https://synapse.<domain>, localpart = lower-cased callsign).
import type { ClientData } from "./types";

// The deployment's domain from the page's host name: the Deploy App UI is
// served on <domain> or mtls.<domain>.
export function domainFromHost(hostname: string): string {
  const host = hostname.toLowerCase().replace(/\.$/, "");
  return host.startsWith("mtls.") ? host.slice(5) : host;
}

export interface Account {
  homeserver: string;
  homeserverDerived: boolean;
  matrixId: string | null;
  matrixIdDerived: boolean;
}

const LOCALPART = /^[a-z0-9._=/+-]+$/;

export function accountFor(data: ClientData, callsign: string | undefined, hostname: string): Account {
  const domain = data.server_name || domainFromHost(hostname);
  const homeserver = data.homeserver || `https://synapse.${domain}`;
  let matrixId: string | null = data.matrix_id || null;
  let matrixIdDerived = false;
  if (!matrixId && callsign) {
    const local = callsign.toLowerCase();
    if (LOCALPART.test(local)) {
      matrixId = `@${local}:${domain}`;
      matrixIdDerived = true;
    }
  }
  return { homeserver, homeserverDerived: !data.homeserver, matrixId, matrixIdDerived };
}

// The host passes {} (or nothing) when it has no data; anything that is not
// a plain object is treated the same way.
export function asClientData(data: unknown): ClientData {
  return data !== null && typeof data === "object" && !Array.isArray(data) ? data : {};
}
