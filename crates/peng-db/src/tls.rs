//! peng's own certificate authority for its database servers.
//!
//! One CA per peng data directory (`ca.pem`, and `ca.key` readable only by peng) signs the
//! certificate of every dedicated server. Clients that trust `ca.pem` verify that they talk to a
//! server peng started; the CA never leaves the machine and signs nothing else. Keys are ECDSA
//! P-256, which MariaDB (OpenSSL) serves and every client library accepts.
//!
//! The CA is valid for ten years, server certificates for two; a server certificate on disk is
//! kept while it is signed by this CA, names every address asked for and has more than
//! [`RENEW_BEFORE`] left, and replaced otherwise, so a restarted server renews its own.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::DbError;

/// The common name of peng's CA, as clients show it.
pub const CA_NAME: &str = "peng database CA";
/// A server certificate is replaced when it expires sooner than this.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * DAY);

/// peng's certificate authority, loaded from or created in its directory.
pub struct Ca {
    pem_path: PathBuf,
    pem: String,
    der: CertificateDer<'static>,
    key: KeyPair,
}

/// The files a server's TLS settings point at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTls {
    /// A copy of the CA certificate, so the server's directory holds everything it uses.
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    /// Loads `ca.pem` and `ca.key` from `dir`, or creates both (and `dir`, mode 0700) when
    /// neither is there. A certificate without its key is an error: the servers it signed
    /// would no longer be trusted by a new one.
    pub fn load_or_create(dir: &Path) -> Result<Ca, DbError> {
        let pem_path = dir.join("ca.pem");
        let key_path = dir.join("ca.key");
        match (pem_path.exists(), key_path.exists()) {
            (true, true) => Ca::load(pem_path, &key_path),
            (true, false) => Err(DbError::Invalid(format!(
                "{} exists without its key {}; restore the key or remove both to make a new CA",
                pem_path.display(),
                key_path.display()
            ))),
            // a key without its certificate is left by a crash while creating: nothing was
            // signed with it yet
            (false, _) => Ca::create(dir, pem_path, &key_path),
        }
    }

    /// The CA certificate that clients trust.
    pub fn pem_path(&self) -> &Path {
        &self.pem_path
    }

    /// The CA certificate in PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Writes `server.pem` and `server-key.pem` (0600) and a copy of the CA as `ca.pem` into
    /// `dir`, naming `ip_sans` and `dns_sans`; keeps the files already there when they are
    /// still good (see the module docs).
    pub fn issue_server(
        &self,
        dir: &Path,
        ip_sans: &[IpAddr],
        dns_sans: &[&str],
    ) -> Result<ServerTls, DbError> {
        create_private_dir(dir)?;
        let tls = ServerTls {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server-key.pem"),
        };
        if fs::read_to_string(&tls.ca).ok().as_deref() != Some(self.pem.as_str()) {
            write_file(&tls.ca, &self.pem, 0o644)?;
        }
        if self.still_good(&tls, ip_sans, dns_sans) {
            return Ok(tls);
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "peng database server");
        params.subject_alt_names = ip_sans.iter().map(|ip| SanType::IpAddress(*ip)).collect();
        for name in dns_sans {
            let name = (*name)
                .to_string()
                .try_into()
                .map_err(|e| DbError::Invalid(format!("bad certificate name {name:?}: {e}")))?;
            params.subject_alt_names.push(SanType::DnsName(name));
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(serial());
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(DAY)).into();
        params.not_after = (now + Duration::from_secs(2 * 365 * DAY)).into();
        let key = KeyPair::generate().map_err(cert_error("making a server key"))?;
        let issuer = Issuer::new(ca_params(), &self.key);
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(cert_error("signing the server certificate"))?;
        write_file(&tls.key, &key.serialize_pem(), 0o600)?;
        write_file(&tls.cert, &cert.pem(), 0o644)?;
        Ok(tls)
    }

    /// Whether the certificate in `tls` is signed by this CA, matches its key, names every
    /// address and is valid for longer than `RENEW_BEFORE`.
    fn still_good(&self, tls: &ServerTls, ip_sans: &[IpAddr], dns_sans: &[&str]) -> bool {
        let (Ok(cert), Ok(key_pem)) = (
            CertificateDer::from_pem_file(&tls.cert),
            fs::read_to_string(&tls.key),
        ) else {
            return false;
        };
        let Ok(key) = KeyPair::from_pem(&key_pem) else {
            return false;
        };
        verify(
            &self.der,
            &cert,
            ip_sans,
            dns_sans,
            SystemTime::now() + RENEW_BEFORE,
        )
        .is_ok()
            && contains(cert.as_ref(), key.public_key_raw())
    }

    fn load(pem_path: PathBuf, key_path: &Path) -> Result<Ca, DbError> {
        let pem = fs::read_to_string(&pem_path)
            .map_err(DbError::io(format!("reading {}", pem_path.display())))?;
        let key_pem = fs::read_to_string(key_path)
            .map_err(DbError::io(format!("reading {}", key_path.display())))?;
        let key = KeyPair::from_pem(&key_pem).map_err(cert_error("reading the CA key"))?;
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| {
            DbError::Invalid(format!("{} is not a certificate: {e}", pem_path.display()))
        })?;
        if !contains(der.as_ref(), key.public_key_raw()) {
            return Err(DbError::Invalid(format!(
                "{} does not belong to the key {}",
                pem_path.display(),
                key_path.display()
            )));
        }
        Ok(Ca {
            pem_path,
            pem,
            der,
            key,
        })
    }

    fn create(dir: &Path, pem_path: PathBuf, key_path: &Path) -> Result<Ca, DbError> {
        create_private_dir(dir)?;
        let key = KeyPair::generate().map_err(cert_error("making the CA key"))?;
        let mut params = ca_params();
        params.serial_number = Some(serial());
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(DAY)).into();
        params.not_after = (now + Duration::from_secs(10 * 365 * DAY)).into();
        let cert = params
            .self_signed(&key)
            .map_err(cert_error("signing the CA certificate"))?;
        write_file(key_path, &key.serialize_pem(), 0o600)?;
        let pem = cert.pem();
        write_file(&pem_path, &pem, 0o644)?;
        tracing::info!(path = %pem_path.display(), "created the database CA");
        Ok(Ca {
            pem_path,
            pem,
            der: cert.der().clone(),
            key,
        })
    }
}

/// Checks `cert` the way a client does: signed by `ca`, a server certificate, valid at `at`,
/// naming every address and name given.
pub fn verify(
    ca: &CertificateDer<'_>,
    cert: &CertificateDer<'_>,
    ip_sans: &[IpAddr],
    dns_sans: &[&str],
    at: SystemTime,
) -> Result<(), String> {
    let anchor = webpki::anchor_from_trusted_cert(ca).map_err(|e| format!("bad CA: {e}"))?;
    let cert = webpki::EndEntityCert::try_from(cert).map_err(|e| format!("bad cert: {e}"))?;
    let at = UnixTime::since_unix_epoch(
        at.duration_since(SystemTime::UNIX_EPOCH)
            .map_err(|e| e.to_string())?,
    );
    cert.verify_for_usage(
        &[
            webpki::ring::ECDSA_P256_SHA256,
            webpki::ring::ECDSA_P384_SHA384,
        ],
        &[anchor],
        &[],
        at,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map_err(|e| format!("not trusted: {e}"))?;
    for ip in ip_sans {
        cert.verify_is_valid_for_subject_name(&ServerName::IpAddress((*ip).into()))
            .map_err(|e| format!("{ip}: {e}"))?;
    }
    for name in dns_sans {
        let server_name =
            ServerName::try_from(*name).map_err(|e| format!("bad name {name:?}: {e}"))?;
        cert.verify_is_valid_for_subject_name(&server_name)
            .map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

const DAY: u64 = 24 * 60 * 60;

/// The CA's name and constraints, the same at creation and whenever it signs, so that issued
/// certificates name exactly the CA's subject and key identifier.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// A random positive 128-bit serial number.
fn serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn cert_error(context: &'static str) -> impl FnOnce(rcgen::Error) -> DbError {
    move |e| DbError::Invalid(format!("{context}: {e}"))
}

pub(crate) fn create_private_dir(dir: &Path) -> Result<(), DbError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(DbError::io(format!("creating {}", dir.display())))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(DbError::io(format!(
        "setting the mode of {}",
        dir.display()
    )))
}

/// Writes `path` through a temporary file and a rename, so a crash never leaves half a file.
pub(crate) fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), DbError> {
    let tmp = path.with_extension("tmp");
    let context = || format!("writing {}", path.display());
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(DbError::io(context()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(DbError::io(context()))?;
    fs::rename(&tmp, path).map_err(DbError::io(context()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::os::unix::fs::PermissionsExt;

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn cert(path: &Path) -> CertificateDer<'static> {
        CertificateDer::from_pem_file(path).unwrap()
    }

    #[test]
    fn the_ca_is_created_once_and_its_key_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("ca");
        let ca = Ca::load_or_create(&ca_dir).unwrap();
        assert_eq!(mode(&ca_dir.join("ca.key")), 0o600);
        assert_eq!(mode(&ca_dir), 0o700);
        let again = Ca::load_or_create(&ca_dir).unwrap();
        assert_eq!(ca.pem(), again.pem());
        assert_eq!(again.pem_path(), ca_dir.join("ca.pem"));
    }

    #[test]
    fn a_certificate_without_its_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Ca::load_or_create(dir.path()).unwrap();
        fs::remove_file(dir.path().join("ca.key")).unwrap();
        let err = Ca::load_or_create(dir.path()).err().unwrap().to_string();
        assert!(err.contains("without its key"), "{err}");
    }

    #[test]
    fn server_certificates_verify_against_the_ca_and_are_reused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(&dir.path().join("ca")).unwrap();
        let tls_dir = dir.path().join("server/tls");
        let tls = ca.issue_server(&tls_dir, &[LOCAL], &["localhost"]).unwrap();
        assert_eq!(mode(&tls.key), 0o600);
        assert_eq!(fs::read_to_string(&tls.ca).unwrap(), ca.pem());
        let first = cert(&tls.cert);
        verify(&ca.der, &first, &[LOCAL], &["localhost"], SystemTime::now()).unwrap();
        let far = SystemTime::now() + Duration::from_secs(3 * 365 * DAY);
        assert!(verify(&ca.der, &first, &[LOCAL], &[], far).is_err());

        // the same names: kept
        ca.issue_server(&tls_dir, &[LOCAL], &["localhost"]).unwrap();
        assert_eq!(cert(&tls.cert), first);
        // a new address: replaced
        let other: IpAddr = "10.1.2.3".parse().unwrap();
        ca.issue_server(&tls_dir, &[LOCAL, other], &["localhost"])
            .unwrap();
        let second = cert(&tls.cert);
        assert_ne!(second, first);
        verify(&ca.der, &second, &[LOCAL, other], &[], SystemTime::now()).unwrap();
    }

    #[test]
    fn a_certificate_of_another_ca_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let ours = Ca::load_or_create(&dir.path().join("ours")).unwrap();
        let theirs = Ca::load_or_create(&dir.path().join("theirs")).unwrap();
        let tls_dir = dir.path().join("tls");
        let tls = theirs.issue_server(&tls_dir, &[LOCAL], &[]).unwrap();
        assert!(verify(
            &ours.der,
            &cert(&tls.cert),
            &[LOCAL],
            &[],
            SystemTime::now()
        )
        .is_err());
        ours.issue_server(&tls_dir, &[LOCAL], &[]).unwrap();
        verify(
            &ours.der,
            &cert(&tls.cert),
            &[LOCAL],
            &[],
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(fs::read_to_string(&tls.ca).unwrap(), ours.pem());
    }
}
