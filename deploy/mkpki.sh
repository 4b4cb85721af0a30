#!/bin/bash
# mkpki.sh DIR: a throw-away test PKI for matrixrmapi's mutual TLS, made with
# the openssl CLI alone (Debian 12's openssl 3.0). For tests and the local
# demo only: keys are unencrypted and the CA lives next to them.
#
#   ca.pem/ca.key              test root CA (signs everything below but other-ca's)
#   server.pem/server.key      CN=localhost, SAN DNS:localhost, IP:127.0.0.1, IP:::1
#   server2.pem/server2.key    the same names: a renewed server certificate (SIGHUP tests)
#   rasenmaeher.pem/.key       CN=rasenmaeher, EKU clientAuth
#   rasenmaeher-chain.pem      rasenmaeher.pem followed by ca.pem
#   user.pem/.key              CN=someuser, EKU clientAuth
#   peer.pem/.key              CN=battlelog.example.test, EKU clientAuth (a peer product)
#   expired.pem/.key           CN=rasenmaeher, valid only in 2020
#   revoked.pem/.key           CN=rasenmaeher, revoked in crl.pem
#   serveronly.pem/.key        CN=rasenmaeher, EKU serverAuth only
#   noeku.pem/.key             CN=rasenmaeher, no extended key usage at all
#   caclient.pem/.key          CN=rasenmaeher, clientAuth, but a CA certificate
#   other-ca.pem/.key          a second, unrelated root CA
#   othercarasenmaeher.pem/.key CN=rasenmaeher signed by other-ca
#   int-ca.pem/.key            an intermediate CA under ca.pem
#   intclient.pem/.key         CN=rasenmaeher signed by int-ca
#   intclient-chain.pem        intclient.pem followed by int-ca.pem
#   revint-ca.pem/.key         an intermediate CA under ca.pem that ca's CRL revokes
#   revintclient.pem/.key      CN=rasenmaeher signed by revint-ca (a valid leaf under a revoked CA)
#   revintclient-chain.pem     revintclient.pem followed by revint-ca.pem
#   sha1client.pem/.key        CN=rasenmaeher, signed with SHA-1
#   weakkey.pem/.key           CN=rasenmaeher, a 1024-bit RSA key
#   crl.pem                    CRLs of ca, int-ca and revint-ca; ca's revokes `revoked` and revint-ca
#   crl-empty.pem              the same three issuers' CRLs, revoking nothing
#
# MKPKI_KEY_TYPE: p256 (default: ECDSA on P-256), rsa2048 or rsa4096 (the
# Deploy App's own PKI issues RSA 4096); every key but weakkey's. For the
# benchmark's handshake cost (bench/run.py --key-type).
#
# Runs again harmlessly: existing files are kept, missing ones are made.
# Prints nothing on success; on failure, the failing command's output.
set -euo pipefail
umask 077

if [ $# -ne 1 ]; then
	echo "usage: $0 DIR" >&2
	exit 2
fi
DIR=$1
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
DB="$DIR/ca-db"
CNF="$DB/openssl.cnf"
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT

# Runs a command quietly; shows what it said when it fails.
run() {
	if ! "$@" >"$LOG" 2>&1; then
		echo "mkpki.sh: failed: $*" >&2
		cat "$LOG" >&2
		exit 1
	fi
}

case ${MKPKI_KEY_TYPE:-p256} in
p256 | rsa2048 | rsa4096) ;;
*)
	echo "mkpki.sh: MKPKI_KEY_TYPE must be p256, rsa2048 or rsa4096" >&2
	exit 2
	;;
esac

newkey() {
	case ${MKPKI_KEY_TYPE:-p256} in
	p256)
		run openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 \
			-pkeyopt ec_param_enc:named_curve -out "$1"
		;;
	rsa*) run openssl genpkey -algorithm RSA -pkeyopt "rsa_keygen_bits:${MKPKI_KEY_TYPE#rsa}" -out "$1" ;;
	esac
}

# A self-signed root: selfsigned NAME CN
selfsigned() {
	[ -f "$DIR/$1.pem" ] && return 0
	[ -f "$DIR/$1.key" ] || newkey "$DIR/$1.key"
	run openssl req -config "$CNF" -new -x509 -key "$DIR/$1.key" -subj "/O=matrixrmapi test/CN=$2" \
		-days 3650 -sha256 -extensions ext_ca -out "$DIR/$1.pem"
}

# A CA database for `openssl ca`: cadb NAME (uses DIR/NAME.pem and .key)
cadb() {
	local d="$DB/$1"
	mkdir -p "$d/newcerts"
	[ -f "$d/index.txt" ] || : >"$d/index.txt"
	[ -f "$d/index.txt.attr" ] || echo "unique_subject = no" >"$d/index.txt.attr"
	[ -f "$d/serial" ] || openssl rand -hex 16 >"$d/serial"
	[ -f "$d/crlnumber" ] || echo 1000 >"$d/crlnumber"
}

# issue CA NAME SUBJECT EXTENSIONS [extra openssl ca options...]
issue() {
	local ca=$1 name=$2 subj=$3 ext=$4
	shift 4
	[ -f "$DIR/$name.pem" ] && return 0
	[ -f "$DIR/$name.key" ] || newkey "$DIR/$name.key"
	run openssl req -config "$CNF" -new -key "$DIR/$name.key" -subj "$subj" -out "$DB/$name.csr"
	run openssl ca -config "$CNF" -name "ca_$ca" -batch -notext -extensions "$ext" \
		-in "$DB/$name.csr" -out "$DIR/$name.pem" "$@"
	rm -f "$DB/$name.csr"
}

mkdir -p "$DB"
cat >"$CNF" <<EOF
[ req ]
distinguished_name = req_dn
prompt = no
[ req_dn ]
CN = unused

[ policy_any ]
organizationName = optional
commonName = supplied

[ ext_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ ext_int_ca ]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ ext_server ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ ext_client ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ ext_serveronly ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ ext_noeku ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ ext_caclient ]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, digitalSignature, keyCertSign
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
# One "openssl ca" section per signing CA: the same settings, its own files.
for ca in ca int-ca revint-ca other-ca; do
	cat >>"$CNF" <<EOF

[ ca_$ca ]
dir = $DB/$ca
database = \$dir/index.txt
new_certs_dir = \$dir/newcerts
serial = \$dir/serial
crlnumber = \$dir/crlnumber
certificate = $DIR/$ca.pem
private_key = $DIR/$ca.key
default_md = sha256
default_days = 3650
default_crl_days = 3650
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no
preserve = yes
EOF
done

selfsigned ca "matrixrmapi test CA"
selfsigned other-ca "matrixrmapi other test CA"
cadb ca
cadb other-ca
issue ca int-ca "/O=matrixrmapi test/CN=matrixrmapi test intermediate CA" ext_int_ca
cadb int-ca
issue ca revint-ca "/O=matrixrmapi test/CN=matrixrmapi test revoked intermediate CA" ext_int_ca
cadb revint-ca

# The empty CRLs come first, before anything is revoked.
if [ ! -f "$DIR/crl-empty.pem" ]; then
	run openssl ca -config "$CNF" -name ca_ca -gencrl -out "$DB/ca-empty.crl"
	run openssl ca -config "$CNF" -name ca_int-ca -gencrl -out "$DB/int-ca-empty.crl"
	run openssl ca -config "$CNF" -name ca_revint-ca -gencrl -out "$DB/revint-ca.crl"
	cat "$DB/ca-empty.crl" "$DB/int-ca-empty.crl" "$DB/revint-ca.crl" >"$DIR/crl-empty.pem"
fi

issue ca server "/CN=localhost" ext_server
issue ca server2 "/CN=localhost" ext_server
issue ca rasenmaeher "/O=matrixrmapi test/CN=rasenmaeher" ext_client
issue ca user "/O=matrixrmapi test/CN=someuser" ext_client
issue ca peer "/O=matrixrmapi test/CN=battlelog.example.test" ext_client
issue ca expired "/O=matrixrmapi test/CN=rasenmaeher" ext_client \
	-startdate 20200101000000Z -enddate 20200102000000Z
issue ca serveronly "/O=matrixrmapi test/CN=rasenmaeher" ext_serveronly
issue ca noeku "/O=matrixrmapi test/CN=rasenmaeher" ext_noeku
issue ca caclient "/O=matrixrmapi test/CN=rasenmaeher" ext_caclient
issue other-ca othercarasenmaeher "/O=matrixrmapi test/CN=rasenmaeher" ext_client
issue int-ca intclient "/O=matrixrmapi test/CN=rasenmaeher" ext_client
issue revint-ca revintclient "/O=matrixrmapi test/CN=rasenmaeher" ext_client
issue ca sha1client "/O=matrixrmapi test/CN=rasenmaeher" ext_client -md sha1
if [ ! -f "$DIR/weakkey.pem" ]; then
	run openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out "$DIR/weakkey.key"
	issue ca weakkey "/O=matrixrmapi test/CN=rasenmaeher" ext_client
fi

if [ ! -f "$DIR/revoked.pem" ]; then
	issue ca revoked "/O=matrixrmapi test/CN=rasenmaeher" ext_client
	run openssl ca -config "$CNF" -name ca_ca -revoke "$DIR/revoked.pem" -crl_reason keyCompromise
	run openssl ca -config "$CNF" -name ca_ca -revoke "$DIR/revint-ca.pem" -crl_reason cACompromise
	rm -f "$DIR/crl.pem"
fi
if [ ! -f "$DIR/crl.pem" ]; then
	run openssl ca -config "$CNF" -name ca_ca -gencrl -out "$DB/ca.crl"
	run openssl ca -config "$CNF" -name ca_int-ca -gencrl -out "$DB/int-ca.crl"
	cat "$DB/ca.crl" "$DB/int-ca.crl" "$DB/revint-ca.crl" >"$DIR/crl.pem"
fi

[ -f "$DIR/rasenmaeher-chain.pem" ] || cat "$DIR/rasenmaeher.pem" "$DIR/ca.pem" >"$DIR/rasenmaeher-chain.pem"
[ -f "$DIR/intclient-chain.pem" ] || cat "$DIR/intclient.pem" "$DIR/int-ca.pem" >"$DIR/intclient-chain.pem"
[ -f "$DIR/revintclient-chain.pem" ] || cat "$DIR/revintclient.pem" "$DIR/revint-ca.pem" >"$DIR/revintclient-chain.pem"

# Certificates and CRLs are public; only keys stay private.
chmod 0644 "$DIR"/*.pem
exit 0
