#!/usr/bin/env python3
"""Generate man/pgsluice.ini.5 from the settings table in src/config/settings.rs.

The table (`pub static SETTINGS`) is the single source of every [pgbouncer]
setting's name, value syntax, default, and whether a reload can change it
(SHOW CONFIG's `changeable`). This script reads it with regular expressions
(the table is written one `def(...)` per entry, see settings.rs), adds the short
descriptions below, and writes roff. Run it after changing the table:

    python3 man/gen-ini-page.py > man/pgsluice.ini.5

`make man-check` fails when the committed page differs from the output.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SETTINGS_RS = ROOT / "src" / "config" / "settings.rs"

# Short descriptions of the settings pgsluice acts on; the others get a generic line.
DESCRIPTIONS = {
    "admin_users": "Comma-separated users allowed to run every admin console command (database pgbouncer).",
    "application_name_add_host": "Append the client's address and port to application_name.",
    "auth_dbname": "The [databases] entry auth_query runs in (default: the database the client asked for). A database entry's own auth_dbname comes first.",
    "auth_file": "The file of users and secrets (userlist.txt syntax: \"name\" \"secret\", one per line; plaintext, md5 or SCRAM-SHA-256 secrets).",
    "peer_id": "This process's id in a group of pgsluice processes sharing a port (so_reuseport), 1 to 16383 (0: no peering). The id is written into the cancel keys clients get, so that a cancel request the kernel gives to another process of the group is passed on to this one (see [peers]). Needs a restart.",
    "so_reuseport": "Set SO_REUSEPORT on the TCP listening sockets pgsluice binds, so that several processes can listen on one port and the kernel spreads new connections among them; give each its own unix_socket_dir and peer_id, and list them all in [peers]. Not used for sockets systemd passes (set ReusePort= in the socket unit). Needs a restart.",
    "auth_ident_file": "The user name maps that map= on peer and cert lines of auth_hba_file names, read with it (at start, reload and SET; a broken line names file and line and changes nothing). Lines are MAP SYSTEM-USER DATABASE-USER, where DATABASE-USER is a user name or all; # starts a comment. As in PgBouncer, regular expressions, +group names and include directives are not supported and stop the load.",
    "auth_type": "How clients authenticate: trust, plain, md5 (SCRAM for users whose secret is a SCRAM verifier), scram-sha-256, any (every client logs in as the database entry's forced user), cert (the client's TLS certificate, checked against client_tls_ca_file, must have the user name as its common name; no password is asked for; needs TLS to clients and client_tls_ca_file, and a failure reaches the client as \"certificate authentication failed\" with the reason in the log), hba (per connection, from auth_hba_file), or pam (the password is asked for in the clear and checked by PAM under the service name pgbouncer, as PgBouncer does, with the client's IP address as PAM_RHOST; auth_file is not read, and the pool logs in to PostgreSQL with the password PAM accepted; PAM checks run one at a time on a thread of their own; the environment variable PGSLUICE_PAM_CONFDIR names a directory to read the service file from instead of /etc/pam.d). ldap is accepted in the file, but logins are refused under it.",
    "auth_hba_file": "The file auth_type = hba reads: pg_hba.conf lines (local, host, hostssl, hostnossl; databases all, sameuser or a list; users all or a list; @file lists; an address as CIDR, all, or address and netmask) whose methods are trust, reject, password, md5, scram-sha-256, peer (the Unix socket peer's OS user logs in as itself; otherwise \"unix socket login rejected\") or cert (as auth_type = cert; a cert line matched on the Unix socket or without TLS refuses). On peer and cert lines, map=NAME lets the OS user or the certificate's common name log in as the users map NAME of auth_ident_file lists for it, and no longer as itself; other options are ignored. The first matching line decides; no match rejects the login, with \"login rejected\". Read at start, reload and SET; a broken line names file and line, stops the start, and leaves a running pooler as it was.",
    "auth_query": "The query that looks up a user missing from auth_file; $1 is the user name, sent as a parameter. It returns the name and the secret (md5, SCRAM verifier or plaintext; NULL for none). It runs as auth_user; the default reads pg_authid, which needs a superuser, so a SECURITY DEFINER function is the usual choice.",
    "auth_user": "The role that runs auth_query for users missing from auth_file. Its own password comes from auth_file (or none, where the server trusts it). A database entry's own auth_user comes first.",
    "autodb_idle_timeout": "Forget the pools (and statistics) of a database made from the * entry once it has had no client and no server connection (see server_idle_timeout) for this long (0: never).",
    "client_idle_timeout": "Close a client connection idle this long (0: never).",
    "client_login_timeout": "Close a client that has not logged in within this time.",
    "dbus": "The D-Bus bus to offer the org.pgsluice.Pooler1 interface on (system, session) or off. pgsluice's own setting; PgBouncer warns about it and starts.",
    "dbus_name": "The well-known bus name pgsluice takes; the D-Bus policy file must allow the service user to own it. pgsluice's own setting.",
    "default_pool_size": "Server connections per (database, user) pool.",
    "transaction_timeout": "Close a client whose transaction has lasted this long, counted from its first message (0: never); its running query is cancelled. A [users] entry may set its own.",
    "disable_pqexec": "Refuse the simple query protocol (PQexec, which can carry several statements in one message): a client that sends a simple Query is closed with \"PQexec disallowed\". Only the extended protocol is served. As in PgBouncer this holds for the admin console too, which speaks only the simple protocol: use D-Bus to watch the pooler then.",
    "idle_transaction_timeout": "Close a client that stays idle inside a transaction this long (0: never).",
    "ignore_startup_parameters": "Comma-separated startup parameters to accept and ignore (for example extra_float_digits).",
    "track_extra_parameters": "Comma-separated parameters to track per client besides client_encoding, DateStyle, TimeZone, standard_conforming_strings and application_name, which are always tracked. A tracked parameter is accepted in the startup packet (and in options as -c name=value), sent back in ParameterStatus, and set on every server the client is given (SET) when the server's value differs. Only parameters the server reports with ParameterStatus can be tracked: PostgreSQL 15 reports among others IntervalStyle and default_transaction_read_only; extensions such as Citus add search_path. Needs a restart.",
    "job_name": "Name used in log lines and the syslog identity default.",
    "listen_addr": "Comma-separated addresses to listen on (* for all; empty: no TCP). Ignored under socket activation.",
    "listen_backlog": "The listen(2) backlog of sockets pgsluice binds itself.",
    "listen_port": "The TCP port, also the number in the Unix socket's name (.s.PGSQL.PORT). Ignored under socket activation.",
    "log_connections": "Log every client login and every server connection opened.",
    "log_disconnections": "Log every client disconnection and every server connection closed, with the reason.",
    "log_pooler_errors": "Log errors the pooler sends to clients.",
    "log_stats": "Log a statistics line per database every stats_period.",
    "logfile": "Also write log lines to this file (reopened on reload). Leave empty under systemd: the journal gets stderr.",
    "max_client_conn": "Most client connections at once; the next gets 53300 (the unit's LimitNOFILE= must be larger).",
    "max_db_client_connections": "Clients allowed per database (its [databases] entry may set its own); one more is refused with \"client connections exceeded (max_db_client_connections)\" (0: no limit).",
    "max_db_connections": "Most server connections per database across its pools (0: no limit).",
    "max_prepared_statements": "In transaction and statement pooling, carry protocol-level named prepared statements (Parse, Bind, Describe, Close) across server connections: each distinct statement is prepared on a server under a name of the pooler's (PGSLUICE_n) on its first use there, and each server keeps at most this many, closing the least recently used. Errors and transaction states are PostgreSQL's own. 0 turns tracking off: statements then exist only on the server they were prepared on. SQL-level PREPARE is not tracked; DISCARD ALL and DEALLOCATE ALL forget the client's statements. A named Parse may be at most 1 MiB.",
    "max_packet_size": "Largest protocol message accepted from a client.",
    "max_user_client_connections": "Clients allowed per login user (its [users] entry may set its own); one more is refused with \"client connections exceeded (max_user_client_connections)\" (0: no limit).",
    "max_user_connections": "Most server connections per user across its pools (0: no limit).",
    "min_pool_size": "Keep at least this many server connections open per pool.",
    "pidfile": "Write the process id here (under systemd: not needed; /run/pgsluice is available).",
    "pkt_buf": "Size of the I/O buffer per active connection.",
    "pool_mode": "When a server connection returns to the pool: session, transaction or statement.",
    "query_timeout": "Cancel a query running longer than this (0: never).",
    "query_wait_timeout": "Drop a client that waited this long for a server connection (0: wait forever).",
    "reserve_pool_size": "Extra server connections a pool may open when clients have waited reserve_pool_timeout.",
    "reserve_pool_timeout": "How long a client waits before the reserve pool is used.",
    "server_check_delay": "Check an idle server connection with server_check_query after it has been idle this long.",
    "server_check_query": "The query that checks an idle server connection (empty: a lighter check).",
    "server_connect_timeout": "Give up connecting (and logging in) to a server after this long.",
    "server_idle_timeout": "Close a server connection idle this long.",
    "server_lifetime": "Close a server connection once it is this old and back in the pool.",
    "server_login_retry": "Wait this long before connecting again after a failed server login or a server that could not be reached; meanwhile clients of an unreachable server wait (up to query_wait_timeout, or client_login_timeout while logging in), and those of a refused login are told the login has been failing.",
    "scram_iterations": "PBKDF2 iterations of the SCRAM-SHA-256 verifier the pooler derives from a plaintext auth_file password to check a SCRAM client; a stored verifier keeps its own count.",
    "server_round_robin": "Hand out the idle server that has waited longest (round robin) instead of the one used last, so that load spreads over every server connection; for servers behind a load balancer.",
    "server_reset_query": "Run when a session-mode client leaves, before the server is reused.",
    "server_reset_query_always": "Run server_reset_query in transaction mode too.",
    "stats_period": "Seconds between statistics updates (SHOW STATS averages, log_stats, the systemd STATUS= line).",
    "stats_users": "Comma-separated users allowed the read-only admin console commands (SHOW ...).",
    "syslog": "Also send log lines to syslog.",
    "syslog_facility": "The syslog facility.",
    "syslog_ident": "The syslog identity.",
    "dns_max_ttl": "How long the addresses of a server's host name are kept once looked up (the TTL DNS gives is not used). A name with several addresses has them taken in turn, one new server connection after another; an address that does not answer is passed over for the next. 0: looked up for every new server connection. When a new lookup finds a name without an address it had, the servers connected to that address are closed once their current use ends (close_needed in SHOW SERVERS). SHOW DNS_HOSTS lists the names kept.",
    "conffile": "The configuration file the next reload (SIGHUP, systemctl reload, RELOAD, D-Bus Reload) reads. SHOW CONFIG shows the file pgsluice was started with; SET conffile on the console names another one, as in PgBouncer. A file that cannot be read fails that reload and leaves the running configuration.",
    "dns_zone_check_period": "How often the SOA serial of each zone of the host names kept (everything after a name's first dot) is asked for. When a zone's serial grows (serials compare as RFC 1982 says), its names are looked up again at once, as when their dns_max_ttl runs out. The SOA queries go to the name servers of resolv_conf, or of /etc/resolv.conf when it is empty. 0: never checked. SHOW DNS_ZONES lists the zones with the serial last seen (0 before the first check).",
    "resolv_conf": "A resolv.conf file of pgsluice's own. When set, servers' host names are looked up by pgsluice's DNS client (the hickory-resolver crate): /etc/hosts first, then the name servers, search list and options of this file; a file that cannot be read or names no name server stops the start. Empty: the system's resolver (getaddrinfo, so nsswitch.conf applies).",
    "dns_nxdomain_ttl": "How long a failed lookup of a server's host name (no such name, or the resolver failing) is kept: server connections within that time fail at once with the same error. 0: looked up again for the next server connection.",
    "client_tls_ca_file": "PEM file of the certificate authorities client certificates must chain to. verify-ca and verify-full need it; under the other modes it has clients asked for a certificate they may leave out (for cert authentication), and one they show must chain to it.",
    "client_tls_cert_file": "PEM file of the certificate (chain) pgsluice shows TLS clients.",
    "client_tls_key_file": "PEM file of the private key of client_tls_cert_file; readable by the user pgsluice runs as, for reloads.",
    "client_tls_ciphers": "TLS 1.2 cipher suites offered to clients, in OpenSSL's cipher-list syntax (names such as ECDHE-ECDSA-AES256-GCM-SHA384 or their IANA spelling, aliases such as HIGH, aRSA, AES256 or CHACHA20 joined with +, and !, - and + before a word to ban, remove or move it) or one of PgBouncer's shortcuts (default, secure, compat, legacy, normal, fast, all, insecure); empty means default. pgsluice (rustls) has six TLS 1.2 suites, all ECDHE with AES-GCM or ChaCha20-Poly1305, so every shortcut selects all six; words for other suites select nothing, and a list that selects none is an error. TLS 1.3 is set by client_tls13_ciphers.",
    "client_tls13_ciphers": "TLS 1.3 cipher suites offered to clients: names separated by colons, from TLS_AES_256_GCM_SHA384, TLS_AES_128_GCM_SHA256 and TLS_CHACHA20_POLY1305_SHA256 (the CCM suites are known but not offered). Unset means all three; a list of only CCM suites leaves TLS 1.3 off.",
    "client_tls_ecdhcurve": "Curves for the ECDHE key exchange with clients: auto (X25519, P-256 and P-384) or a list of names such as secp384r1, prime256v1, P-256 or X25519. none is refused, since every suite pgsluice offers needs ECDHE.",
    "client_tls_protocols": "TLS versions offered to clients: secure (TLS 1.2 and 1.3), all, or a list such as tlsv1.3 or all,!tlsv1.2. pgsluice (rustls) offers TLS 1.2 and 1.3 only.",
    "client_tls_sslmode": "TLS for TCP clients: disable (SSLRequest answered N), allow or prefer (TLS when the client asks), require (plain TCP refused with 'SSL required'), verify-ca or verify-full (also a client certificate from client_tls_ca_file). Unix-socket clients never use TLS.",
    "server_tls_ca_file": "PEM file of the certificate authorities server certificates must chain to (needed by verify-ca and verify-full).",
    "server_tls_cert_file": "PEM file of the client certificate pgsluice shows servers (with server_tls_key_file), for PostgreSQL's cert authentication.",
    "server_tls_key_file": "PEM file of the private key of server_tls_cert_file.",
    "server_tls_ciphers": "TLS 1.2 cipher suites offered to servers, as client_tls_ciphers.",
    "server_tls13_ciphers": "TLS 1.3 cipher suites offered to servers, as client_tls13_ciphers.",
    "server_tls_protocols": "TLS versions used with servers, as client_tls_protocols.",
    "server_tls_sslmode": "TLS to servers reached over TCP: disable (no SSLRequest), allow or prefer (TLS when the server takes it), require (TLS or no connection), verify-ca (the certificate must chain to server_tls_ca_file), verify-full (and name the host). The first three do not check the certificate, as in PgBouncer.",
    "tcp_keepalive": "Enable TCP keepalive on client and server connections.",
    "tcp_keepcnt": "Keepalive probes before the connection is dropped (TCP_KEEPCNT; 0: the kernel's default).",
    "tcp_keepidle": "Seconds idle before the first keepalive probe (TCP_KEEPIDLE; 0: the kernel's default).",
    "tcp_keepintvl": "Seconds between keepalive probes (TCP_KEEPINTVL; 0: the kernel's default).",
    "tcp_socket_buffer": "SO_SNDBUF and SO_RCVBUF of client and server TCP sockets, in bytes (0: the kernel sizes and grows them).",
    "server_fast_close": "Session pooling: when the pool retires its servers (RECONNECT, a reload that changes the database's connection settings, or a new DNS answer without the address a server is at), close a client's server as soon as its transaction has ended, and the client with it (FATAL \"database configuration changed\"), so that the client notices its session is gone. Off, a session keeps its old server until the client leaves. Transaction and statement pooling always replace retired servers at the end of their use.",
    "query_wait_notify": "Seconds a client may wait in the queue for a server before it is sent a NOTICE, once per wait: \"No server connection available in postgres backend, client being queued\" (PgBouncer 1.25's words). Checked when queued clients wake to look at their deadlines, four times a second. 0: no notice.",
    "cancel_wait_timeout": "How long a cancel request may take to reach PostgreSQL: to connect, send it, and see PostgreSQL close the connection, which it does once it has signalled the backend. Until then the server it cancels on is held back from its pool (SHOW SERVERS state being_canceled), so that a late cancel cannot stop the next client's query. When the time runs out the request is given up, logged, and the server is released. 0: no limit.",
    "tcp_defer_accept": "TCP_DEFER_ACCEPT on the TCP listeners, those systemd passes included (so it overrides the socket unit's DeferAcceptSec=): the kernel hands a connection over only once the client has sent its first packet, which saves a wake-up per login. Set as PgBouncer sets it, to 1 second; a reload or SET applies a change to the listening sockets before it reports done.",
    "tcp_user_timeout": "TCP_USER_TIMEOUT of client and server TCP sockets, in milliseconds (0: the kernel's default).",
    "unix_socket_dir": "Directory of the Unix socket pgsluice binds itself (empty: none). Ignored under socket activation.",
    "unix_socket_group": "Group of that Unix socket.",
    "unix_socket_mode": "Mode of that Unix socket (octal).",
    "user": "Started as root, switch to this user once the sockets are open. Leave unset with the packaged unit, which runs as postgres already.",
    "verbose": "Log level: 1 adds debug lines, 2 more (the -v option adds to it).",
}

KINDS = {
    "STR": "string",
    "BOOL": "boolean",
    "TIME": "seconds",
    "INT": "integer",
    "UINT": "integer (0..4294967295)",
    "PORT": "port (0..65535)",
    "PEER_ID": "integer (0..16383)",
}


def esc(text):
    """Escape text for a roff line."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    if text[:1] in (".", "'"):
        text = "\\&" + text
    return text


def main():
    src = SETTINGS_RS.read_text()
    consts = dict(re.findall(r'const\s+(\w+):\s*&str\s*=\s*"((?:[^"\\]|\\.)*)";', src))
    lists = {
        name: re.findall(r'"([^"]*)"', body)
        for name, body in re.findall(r'const\s+(\w+):\s*&\[&str\]\s*=\s*&\[(.*?)\];', src, re.S)
    }
    table = re.search(r"pub static SETTINGS: &\[SettingDef\] = &\[(.*?)\n\];", src, re.S)
    if not table:
        sys.exit("gen-ini-page: SETTINGS table not found in " + str(SETTINGS_RS))
    body = "\n".join(l for l in table.group(1).splitlines() if not l.strip().startswith("//"))
    entries = re.findall(
        r'def\(\s*"(\w+)",\s*(Kind::Enum\((\w+)\)|\w+),\s*(None|Some\(("(?:[^"\\]|\\.)*"|\w+)\))\s*\)'
        r'((?:\s*\.\w+\(\))*)\s*,',
        body,
    )
    if len(entries) != body.count("def("):
        sys.exit(f"gen-ini-page: parsed {len(entries)} of {body.count('def(')} entries")

    out = []
    w = out.append
    w('.\\" Generated by man/gen-ini-page.py from src/config/settings.rs; do not edit.')
    w('.\\" Regenerate: python3 man/gen-ini-page.py > man/pgsluice.ini.5')
    w(".TH PGSLUICE.INI 5 \"\" \"pgsluice\" \"File Formats\"")
    w(".SH NAME")
    w("pgsluice.ini \\- configuration file of the pgsluice connection pooler")
    w(".SH SYNOPSIS")
    w(".I /etc/pgsluice/pgsluice.ini")
    w(".br")
    w(".I /etc/pgsluice/userlist.txt")
    w(".SH DESCRIPTION")
    w("pgsluice reads PgBouncer's")
    w(".I pgbouncer.ini")
    w("unchanged: an INI file with the sections")
    w(".B [pgbouncer]")
    w("(also accepted as")
    w(".BR [pgsluice] ),")
    w(".BR [databases] ,")
    w(".B [users]")
    w("and")
    w(".BR [peers] .")
    w("Lines starting with")
    w(".B ;")
    w("or")
    w(".B #")
    w("are comments; values are taken verbatim (they are libpq connection strings, no quoting);")
    w(".BI %include \" file\"")
    w("reads another file in place.")
    w(".PP")
    w("A known setting that pgsluice does not act on yet is accepted and warned about once;")
    w("an unknown key is a warning; a malformed value is an error naming file, line and key")
    w("(fatal at start\\-up; at reload the error is reported and the running configuration stays).")
    w(".SS [databases]")
    w("Each line maps a database name clients ask for to a libpq connection string:")
    w(".PP")
    w(".RS")
    w(".nf")
    w("appdb = host=localhost dbname=app pool_size=40")
    w("* = host=localhost port=5432")
    w(".fi")
    w(".RE")
    w(".PP")
    w("The")
    w(".B *")
    w("entry is the fallback for every database not listed.")
    w("Keys besides libpq's:")
    w(".BR pool_size ,")
    w(".BR min_pool_size ,")
    w(".BR reserve_pool ,")
    w(".BR max_db_connections ,")
    w(".BR pool_mode ,")
    w(".BR auth_user ,")
    w(".BR auth_query ,")
    w(".BR auth_dbname ,")
    w(".BR client_encoding ,")
    w(".BR datestyle ,")
    w(".BR timezone ,")
    w("as in PgBouncer.")
    w(".SS [users]")
    w("Each line sets per\\-user options:")
    w(".IR name \" = pool_mode=transaction max_user_connections=10\".")
    w(".SS [peers]")
    w("With")
    w(".B peer_id")
    w("set, each line names another pgsluice process of the group by its peer id:")
    w(".IR id \" = host=/run/pgsluice-2 port=6432\"")
    w("(a Unix socket directory or a host name;")
    w(".BR pool_size ,")
    w("PgBouncer's cap on cancel requests in flight to the peer, is accepted but not enforced).")
    w("A cancel request whose key another peer handed out is passed on to it,")
    w("once; SHOW PEER_POOLS counts those on their way.")
    w(".SS auth_file")
    w("One user per line:")
    w(".B \\(dqname\\(dq \\(dqsecret\\(dq")
    w("with")
    w(".B \\(dq\\(dq")
    w("for a quote inside a field. A secret is plaintext,")
    w(".B md5")
    w("followed by md5(password username) in hex, or a")
    w(".B SCRAM\\-SHA\\-256$")
    w("verifier as in PostgreSQL's pg_authid.")
    w(".SH SETTINGS")
    w("The settings of the")
    w(".B [pgbouncer]")
    w("section, as")
    w(".B SHOW CONFIG")
    w("lists them.")
    w(".I Reload")
    w("says whether a change takes effect on reload (SIGHUP,")
    w(".BR \"systemctl reload pgsluice\" ,")
    w("the console's RELOAD or SET, D\\-Bus Reload); otherwise it needs a restart.")
    w("Times are seconds and may be fractional (0.5).")
    w("Booleans are 0, 1, yes, no, on, off, true or false.")
    w("Settings marked")
    w(".I not acted on")
    w("are accepted for compatibility with PgBouncer 1.26 and warned about when set.")
    for name, kind, enum_list, default, default_val, marks in entries:
        restart = ".restart()" in marks
        ours = ".ours()" in marks
        if enum_list:
            words = lists.get(enum_list)
            if words is None:
                sys.exit(f"gen-ini-page: unknown list {enum_list}")
            typ = "one of " + ", ".join(words)
        else:
            typ = KINDS.get(kind)
            if typ is None:
                sys.exit(f"gen-ini-page: unknown kind {kind} for {name}")
        if default == "None":
            dflt = "unset"
        elif default_val.startswith('"'):
            dflt = default_val[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        else:
            dflt = consts.get(default_val)
            if dflt is None:
                sys.exit(f"gen-ini-page: unknown constant {default_val}")
        if dflt == "":
            dflt = "empty"
        w(".TP")
        w(".B " + esc(name))
        w(esc(DESCRIPTIONS.get(name, "Accepted for PgBouncer compatibility; not acted on yet.")))
        w(".br")
        w(
            "Type: " + esc(typ) + ". Default: "
            + ("\\fI" + esc(dflt) + "\\fP" if dflt in ("unset", "empty") else "\\fB" + esc(dflt) + "\\fP")
            + ". Reload: " + ("no (restart)" if restart else "yes") + "."
            + ("" if ours else " \\fINot acted on.\\fP")
        )
        if name in DESCRIPTIONS and not ours:
            sys.exit(f"gen-ini-page: {name} has a description but is not implemented")
    w(".SH FILES")
    w(".TP")
    w(".I /etc/pgsluice/pgsluice.ini")
    w("The configuration the packaged unit starts with (a conffile, owned by postgres, mode 640).")
    w(".TP")
    w(".I /etc/pgsluice/userlist.txt")
    w("The default")
    w(".BR auth_file .")
    w(".SH EXAMPLES")
    w("A transaction pooler in front of the local PostgreSQL:")
    w(".PP")
    w(".RS")
    w(".nf")
    for line in [
        "[databases]",
        "* = host=localhost port=5432",
        "",
        "[pgbouncer]",
        "listen_addr = localhost",
        "listen_port = 6432",
        "unix_socket_dir = /run/postgresql",
        "auth_type = scram\\-sha\\-256",
        "auth_file = /etc/pgsluice/userlist.txt",
        "admin_users = postgres",
        "pool_mode = transaction",
        "max_client_conn = 1000",
        "default_pool_size = 20",
    ]:
        w(line if line else ".sp 0")
    w(".fi")
    w(".RE")
    w(".SH SEE ALSO")
    w(".BR pgsluice (8),")
    w(".BR pgbouncer (5),")
    w(".BR systemd.socket (5)")
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
