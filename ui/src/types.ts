// The props the Deploy App UI passes to a product's remote page.

export interface Room {
  key: string;
  alias: string;
  link: string;
  name?: string;
}

// The `data` object of this service's api/v2/clients/data reply; `{}` when
// the host could not get it, so every field is optional.
export interface ClientData {
  matrix_id?: string;
  callsign?: string;
  homeserver?: string;
  server_name?: string;
  deployment?: string;
  admin?: boolean;
  rooms?: Room[];
}

export interface Meta {
  theme?: string;
  callsign?: string;
}

export interface RemoteUiProps {
  data?: ClientData | Record<string, never> | null;
  meta?: Meta | null;
  shortname?: string;
  onNavigate?: (options: { to: string }) => unknown;
}
