/* config: the service's settings, read once at start from the environment and
 * the Kraftwerk manifest. Every string is owned by the struct (config_free).
 * A missing or invalid setting is reported as one line naming the variable;
 * the registration secret's value never appears in such a line. */
#pragma once
#include <stddef.h>

#include "errtext.h"

struct config {
	char *synapse_url;               /* SYNAPSE_URL, no trailing slash */
	char *synapse_url_shown;         /* the same for logs and summaries: user information as "***" */
	char *registration_secret;       /* SYNAPSE_REGISTRATION_SECRET (secret) */
	char *bot_username;              /* SYNAPSE_BOT_USERNAME (localpart) */
	char *token_file;                /* SYNAPSE_TOKEN_FILE */
	char *interop_bot_username;      /* INTEROP_BOT_USERNAME (localpart of the ingest bot) */
	char *interop_token_file;        /* SYNAPSE_TOKEN_FILE + ".interop": the ingest bot's token */
	char *server_domain;             /* SERVER_DOMAIN or product.dns minus first label */
	char *manifest_path;             /* KRAFTWERK_MANIFEST */
	int manifest_found;              /* 0: fallback values in use */
	char *deployment;                /* manifest deployment */
	char *certcn;                    /* manifest rasenmaeher.certcn */
	char *rm_base_uri;               /* manifest rasenmaeher.init.base_uri */
	char *product_dns;               /* manifest product.dns */
	char *product_uri;               /* manifest product.uri */
	char *database_path;             /* DATABASE_PATH */
	char *listen_address;            /* LISTEN_ADDRESS */
	int listen_port;                 /* LISTEN_PORT */
	int max_connections_per_address; /* MAX_CONNECTIONS_PER_ADDRESS; 0: no limit (trusted proxies are exempt) */
	char *metrics_address;           /* METRICS_ADDRESS: numeric IPv4 or IPv6 address of the metrics listener */
	int metrics_port;                /* METRICS_PORT; 0: no metrics listener */
	char *tls_cert_file, *tls_key_file, *tls_client_ca_file, *tls_crl_file;
	char *tls_priorities;         /* TLS_PRIORITIES: GnuTLS priority string (native TLS) */
	char *mtls_header_name;       /* MTLS_HEADER_NAME */
	char *mtls_trusted_proxies;   /* MTLS_TRUSTED_PROXIES, comma separated */
	char *synapse_public_baseurl; /* SYNAPSE_PUBLIC_BASEURL */
	char *ui_dir;                 /* UI_DIR, the real path of a directory; NULL: no UI served */
	int reconcile_interval;       /* RECONCILE_INTERVAL, seconds */
	int synapse_wait_timeout;     /* SYNAPSE_WAIT_TIMEOUT, seconds */
	int log_level;                /* LOG_LEVEL as a Python level number */
	int log_ecs;                  /* LOG_CONSOLE_FORMATTER == ecs */
	/* Desired state from Kubernetes (the OpenDefence platform's Users): */
	int kube_source;        /* KUBERNETES_SOURCE: 1 watches the platform; 0 (default) callbacks only */
	char *kube_url;         /* KUBERNETES_URL, or the in-cluster service address */
	char *kube_token_file;  /* KUBERNETES_TOKEN_FILE, or the service account's token */
	char *kube_ca_file;     /* KUBERNETES_CA_FILE, or the service account's ca.crt; NULL: system CAs */
	char *kube_namespace;   /* KUBERNETES_NAMESPACE, POD_NAMESPACE or the service account's namespace */
	char *kube_admin_roles; /* KUBERNETES_ADMIN_ROLES: comma-separated Role names that make an admin */
	char *lease_name;       /* LEASE_NAME: the coordination.k8s.io Lease of the leader */
	char *pod_name;         /* POD_NAME (or the host name): this replica's identity in the Lease */
	int lease_duration;     /* LEASE_DURATION seconds: a leader not renewing for this long is replaced */
};

/* TLS 1.2 and 1.3 only, AEAD ciphers with forward secrecy, the server's
 * order of preference. */
#define CONFIG_TLS_PRIORITIES                                                                                  \
	"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM:+CHACHA20-POLY1305:" \
	"-MAC-ALL:+AEAD:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:%SERVER_PRECEDENCE"

/* Where settings come from; getenv in production, a table in tests. */
typedef const char *(*config_getenv_fn)(const char *name);

enum config_need { CONFIG_SERVE = 1, CONFIG_CLIENT = 0 };

enum {
	CONFIG_EVALUE = ERRTEXT_CONFIG - 1,      /* a setting has a value it may not have */
	CONFIG_EMISSING = ERRTEXT_CONFIG - 2,    /* a required setting is not set */
	CONFIG_EUNREADABLE = ERRTEXT_CONFIG - 3, /* a file a setting names cannot be read */
	CONFIG_EMANIFEST = ERRTEXT_CONFIG - 4,   /* the manifest is not JSON or lacks a required key */
	CONFIG_ENOMEM = ERRTEXT_CONFIG - 5,      /* out of memory */
};

/* The text for a CONFIG_E* code. */
const char *config_strerror(int code);

/* Fills *cfg. With CONFIG_SERVE the registration secret is required (the
 * healthcheck and openapi commands do not need it). Returns 0, or a CONFIG_E*
 * code with one line in err naming the variable and what is wrong. Warnings (manifest
 * missing) go to the log. */
int config_load(struct config *cfg, config_getenv_fn env, enum config_need need, char *err, size_t errlen);
void config_free(struct config *cfg);

/* The settings as one line of KEY=value for the start-up log, in out
 * (always NUL-terminated; cut at outlen). Secrets are masked: the
 * registration secret shows only whether it is set, a password in a URL
 * as "***". */
#define CONFIG_DESCRIBE_MAX 4096
void config_describe(const struct config *cfg, char *out, size_t outlen);
