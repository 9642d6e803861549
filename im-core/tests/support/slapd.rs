//! A throw-away OpenLDAP slapd with LDAPS on loopback, for tests: a temp
//! dir, an openssl-generated
//! CA and server certificate (SAN IP:127.0.0.1, DNS:localhost), a second CA
//! that signed nothing, AD-like attributes (`sAMAccountName`,
//! `userPrincipalName`), users alice/bob/carol (password `<name>pass`) and a
//! bind service account `cn=svc-bind,ou=services,dc=example,dc=com`
//! (`svcsecret`). Stopped (killed) on drop.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The suffix of the test directory.
pub const SUFFIX: &str = "dc=example,dc=com";
/// The service account's DN.
pub const SVC_DN: &str = "cn=svc-bind,ou=services,dc=example,dc=com";
/// The service account's password.
pub const SVC_PW: &str = "svcsecret";

/// A running slapd.
pub struct Slapd {
    dir: tempfile::TempDir,
    /// `ldaps://127.0.0.1:<port>`.
    pub ldaps_url: String,
    /// `ldap://127.0.0.1:<port>` (StartTLS available).
    pub ldap_url: String,
    pid: Option<String>,
}

const SCRIPT: &str = r#"
set -euo pipefail
D=$LDAP_DIR; mkdir -p "$D/db" "$D/tls" "$D/wrong"
SUFFIX=dc=example,dc=com; ROOTPW=rootsecret
cd "$D/tls"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=Test LDAP CA" \
  -keyout ca.key -out ca.crt -addext basicConstraints=critical,CA:TRUE \
  -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' > ext.cnf
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
  -extfile ext.cnf -out server.crt 2>/dev/null
cd "$D/wrong"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=Test LDAP CA" \
  -keyout ca.key -out ca.crt -addext basicConstraints=critical,CA:TRUE \
  -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
cat > "$D/adlike.schema" <<'S'
attributetype ( 1.2.840.113556.1.4.221 NAME 'sAMAccountName'
  EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.656 NAME 'userPrincipalName'
  EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.4203.666.99.1 NAME 'adLikeUser' AUXILIARY
  MAY ( sAMAccountName $ userPrincipalName ) )
S
cat > "$D/slapd.conf" <<C
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
include $D/adlike.schema
pidfile  $D/slapd.pid
argsfile $D/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCACertificateFile  $D/tls/ca.crt
TLSCertificateFile    $D/tls/server.crt
TLSCertificateKeyFile $D/tls/server.key
database mdb
maxsize 104857600
suffix "$SUFFIX"
rootdn "cn=admin,$SUFFIX"
rootpw $(slappasswd -s "$ROOTPW")
directory $D/db
index objectClass,uid,sAMAccountName,userPrincipalName eq
access to attrs=userPassword by self write by anonymous auth by * none
access to * by users read by * none
C
pw() { slappasswd -s "$1"; }
cat > "$D/base.ldif" <<L
dn: $SUFFIX
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=people,$SUFFIX
objectClass: organizationalUnit
ou: people

dn: ou=services,$SUFFIX
objectClass: organizationalUnit
ou: services

dn: cn=svc-bind,ou=services,$SUFFIX
objectClass: inetOrgPerson
cn: svc-bind
sn: svc-bind
userPassword: $(pw svcsecret)

L
for u in alice bob carol; do cat >> "$D/base.ldif" <<L
dn: uid=$u,ou=people,$SUFFIX
objectClass: inetOrgPerson
objectClass: adLikeUser
uid: $u
cn: ${u^}
sn: Test
mail: $u@example.com
sAMAccountName: $u
userPrincipalName: $u@example.com
userPassword: $(pw "${u}pass")

L
done
slaptest -Q -u -f "$D/slapd.conf"
slapadd -q -f "$D/slapd.conf" -l "$D/base.ldif"
slapd -f "$D/slapd.conf" -h "ldaps://127.0.0.1:$LDAPS_PORT/ ldap://127.0.0.1:$LDAP_PORT/"
export LDAPTLS_CACERT=$D/tls/ca.crt
for i in $(seq 1 100); do
  ldapsearch -x -H "ldaps://127.0.0.1:$LDAPS_PORT" -b "" -s base >/dev/null 2>&1 && exit 0; sleep 0.1
done
echo "slapd did not answer on ldaps://127.0.0.1:$LDAPS_PORT" >&2
exit 1
"#;

fn find(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// A loopback port nobody listens on (at the moment of the call).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Slapd {
    /// Starts slapd, or returns `None` (after printing why) when slapd or
    /// openssl is not installed. With `CI` set, a missing tool panics: CI
    /// must run these tests.
    pub fn start() -> Option<Slapd> {
        let tools = [
            "slapd",
            "slapadd",
            "slaptest",
            "slappasswd",
            "ldapsearch",
            "openssl",
        ];
        let missing: Vec<&str> = tools.into_iter().filter(|t| find(t).is_none()).collect();
        if !missing.is_empty() {
            let msg = format!(
                "skipped: slapd not installed (missing {}; apt-get install slapd ldap-utils openssl)",
                missing.join(", ")
            );
            if std::env::var_os("CI").is_some() {
                panic!("CI is set, so the LDAP tests must run: {msg}");
            }
            eprintln!("{msg}");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("im-slapd")
            .tempdir()
            .unwrap();
        let (ldaps_port, ldap_port) = (free_port(), free_port());
        let path = format!(
            "{}:/usr/sbin:/sbin",
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new("bash")
            .arg("-c")
            .arg(SCRIPT)
            .env("LDAP_DIR", dir.path())
            .env("LDAPS_PORT", ldaps_port.to_string())
            .env("LDAP_PORT", ldap_port.to_string())
            .env("PATH", path)
            .output()
            .expect("run bash");
        let pid = std::fs::read_to_string(dir.path().join("slapd.pid"))
            .ok()
            .map(|p| p.trim().to_string());
        let slapd = Slapd {
            dir,
            ldaps_url: format!("ldaps://127.0.0.1:{ldaps_port}"),
            ldap_url: format!("ldap://127.0.0.1:{ldap_port}"),
            pid,
        };
        assert!(
            out.status.success(),
            "slapd start failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Some(slapd)
    }

    /// The CA that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("tls/ca.crt")
    }

    /// A CA (same name) that signed nothing the server presents.
    pub fn wrong_ca_file(&self) -> PathBuf {
        self.dir.path().join("wrong/ca.crt")
    }

    /// The temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        if let Some(pid) = &self.pid {
            let _ = Command::new("kill").arg(pid).status();
            // Wait for it to go (the pid file is removed on exit).
            for _ in 0..50 {
                if !self.dir.path().join("slapd.pid").exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}
