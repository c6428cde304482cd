"""One throwaway PostgreSQL 15 for the whole run: a temporary data directory, a free
port on 127.0.0.1, fsync off (the same server for every target), two password roles,
and the pgbench tables."""

import os
import subprocess

from . import proc

# Two roles, so that direct PostgreSQL uses the same auth method as the poolers'
# clients: pg_hba says md5, and PostgreSQL then does md5 for a role whose password is
# stored as md5 and SCRAM-SHA-256 for a role whose password is stored as a SCRAM
# verifier.
MD5_USER, MD5_PASSWORD = "bench", "bench-md5-pw"
SCRAM_USER, SCRAM_PASSWORD = "bench_scram", "bench-scram-pw"
DATABASE = "bench"


class Cluster:
    def __init__(self, pgbin, work, max_connections):
        self.pgbin = pgbin
        self.work = work
        self.data = os.path.join(work, "data")
        self.log = os.path.join(work, "postgres.log")
        self.max_connections = max_connections
        self.port = None
        self.started = False

    def bin(self, name):
        return os.path.join(self.pgbin, name)

    def start(self, port):
        self.port = port
        proc.run(
            [self.bin("initdb"), "--no-sync", "-A", "trust", "-U", "postgres", "-E", "UTF8",
             "--locale=C", "-D", self.data],
            timeout=120, as_pg=True,
        )
        with open(os.path.join(self.data, "pg_hba.conf"), "w") as f:
            f.write("local all all trust\n")
            f.write("host all all 127.0.0.1/32 md5\n")
        options = " ".join([
            f"-p {port}",
            f"-k {self.work}",
            "-c listen_addresses=127.0.0.1",
            f"-c max_connections={self.max_connections}",
            "-c fsync=off",
        ])
        proc.run(
            [self.bin("pg_ctl"), "-D", self.data, "-l", self.log, "-w", "-t", "60", "-o", options,
             "start"],
            timeout=90, as_pg=True,
        )
        self.started = True

    def psql(self, sql, db="postgres", user="postgres"):
        out = proc.run(
            [self.bin("psql"), "-XAtq", "-v", "ON_ERROR_STOP=1", "-h", self.work, "-p",
             str(self.port), "-U", user, "-d", db, "-c", sql],
            timeout=120,
        )
        return out.stdout.strip()

    def create_roles_and_data(self, scale):
        self.psql(
            "SET password_encryption = 'md5';"
            f"CREATE ROLE {MD5_USER} LOGIN PASSWORD '{MD5_PASSWORD}';"
            "SET password_encryption = 'scram-sha-256';"
            f"CREATE ROLE {SCRAM_USER} LOGIN PASSWORD '{SCRAM_PASSWORD}';"
        )
        self.psql(f"CREATE DATABASE {DATABASE} OWNER {MD5_USER}")
        proc.run(
            [self.bin("pgbench"), "-i", "-q", "-s", str(scale), "-h", self.work, "-p",
             str(self.port), "-U", MD5_USER, DATABASE],
            timeout=600,
        )
        self.psql(
            f"GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {SCRAM_USER}",
            db=DATABASE,
        )
        self.psql("VACUUM ANALYZE", db=DATABASE)

    def secrets(self):
        """userlist.txt lines: the md5 hash and the SCRAM verifier exactly as stored in
        pg_authid, so both poolers can log in to PostgreSQL with them (md5 with the
        hash; SCRAM pass-through with the verifier)."""
        lines = []
        for user in (MD5_USER, SCRAM_USER):
            secret = self.psql(f"SELECT rolpassword FROM pg_authid WHERE rolname = '{user}'")
            lines.append(f'"{user}" "{secret}"')
        return "\n".join(lines) + "\n"

    def postmaster_pid(self):
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            return int(f.readline())

    def version(self):
        return proc.run([self.bin("postgres"), "--version"], timeout=10).stdout.strip()

    def stop(self):
        if not self.started:
            return
        self.started = False
        try:
            proc.run([self.bin("pg_ctl"), "-D", self.data, "-m", "fast", "-w", "-t", "30", "stop"],
                     timeout=60, as_pg=True, check=False)
        except subprocess.TimeoutExpired:
            proc.run([self.bin("pg_ctl"), "-D", self.data, "-m", "immediate", "stop"],
                     timeout=30, as_pg=True, check=False)
