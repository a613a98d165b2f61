//! Small helpers around x509-parser and PEM decoding shared by the other modules.

use std::net::IpAddr;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::error::{Error, Result};
use crate::identity::{validate_name, SPIFFE_PREFIX};

/// Parses one DER certificate; `what` names it in errors.
pub(crate) fn parse_der<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>> {
    let (_rest, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Error::invalid(what, format!("it is not an X.509 certificate: {e}")))?;
    Ok(cert)
}

/// Every certificate in a PEM text, in order; at least one.
pub(crate) fn certs_from_pem(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::invalid(what, format!("cannot decode PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::invalid(
            what,
            "it holds no PEM `CERTIFICATE` block; expected a certificate written by `meshctl certs`",
        ));
    }
    Ok(certs)
}

/// The first certificate of a PEM text.
pub(crate) fn first_cert_from_pem(pem: &str, what: &str) -> Result<CertificateDer<'static>> {
    let mut certs = certs_from_pem(pem, what)?;
    Ok(certs.swap_remove(0))
}

/// A mesh identity is a leaf for TLS: not a CA, allowed to sign (TLS 1.3
/// needs digitalSignature) and, when it names extended usages, usable
/// for TLS client or server authentication. Each refusal says which.
pub(crate) fn check_leaf_usage(cert: &X509Certificate<'_>, what: &str) -> Result<()> {
    let fix = "issue a leaf certificate with the mesh CA (`meshctl certs issue`)";
    if cert.is_ca() {
        return Err(Error::invalid(
            what,
            format!("it is a CA certificate (basic constraints CA:TRUE), which cannot be a mesh identity; {fix}"),
        ));
    }
    match cert.key_usage() {
        Err(e) => {
            return Err(Error::invalid(
                what,
                format!("its key usage cannot be read: {e}"),
            ))
        }
        Ok(Some(ku)) if !ku.value.digital_signature() => {
            return Err(Error::invalid(
                what,
                format!("its key usage lacks digitalSignature, which TLS 1.3 needs; {fix}"),
            ))
        }
        Ok(_) => {}
    }
    match cert.extended_key_usage() {
        Err(e) => Err(Error::invalid(
            what,
            format!("its extended key usage cannot be read: {e}"),
        )),
        Ok(Some(eku)) if !(eku.value.client_auth || eku.value.server_auth || eku.value.any) => {
            Err(Error::invalid(
                what,
                format!("its extended key usage allows neither TLS client nor server authentication; {fix}"),
            ))
        }
        Ok(_) => Ok(()),
    }
}

/// The general names of the subject alternative name extension (empty when absent).
fn general_names<'a>(cert: &'a X509Certificate<'_>, what: &str) -> Result<&'a [GeneralName<'a>]> {
    let ext = cert.subject_alternative_name().map_err(|e| {
        Error::invalid(
            what,
            format!("its subject alternative names cannot be read: {e}"),
        )
    })?;
    Ok(ext.map(|e| e.value.general_names.as_slice()).unwrap_or(&[]))
}

/// All URI SANs that start with `spiffe://`.
pub(crate) fn spiffe_uris(cert: &X509Certificate<'_>, what: &str) -> Result<Vec<String>> {
    Ok(general_names(cert, what)?
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(uri) if uri.starts_with(SPIFFE_PREFIX) => Some(uri.to_string()),
            _ => None,
        })
        .collect())
}

/// All SANs rendered as text: URIs and DNS names as they are, IP addresses in their usual
/// notation, anything else tagged with its kind.
pub(crate) fn render_sans(cert: &X509Certificate<'_>, what: &str) -> Result<Vec<String>> {
    Ok(general_names(cert, what)?
        .iter()
        .map(|n| match n {
            GeneralName::URI(uri) => uri.to_string(),
            GeneralName::DNSName(dns) => dns.to_string(),
            GeneralName::IPAddress(bytes) => render_ip(bytes),
            GeneralName::RFC822Name(mail) => format!("email:{mail}"),
            other => format!("{other:?}"),
        })
        .collect())
}

fn render_ip(bytes: &[u8]) -> String {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        IpAddr::from(v4).to_string()
    } else if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        IpAddr::from(v6).to_string()
    } else {
        format!("ip:{bytes:02x?}")
    }
}

/// Whether the certificate says `CA:TRUE` in its basic constraints.
pub(crate) fn is_ca(cert: &X509Certificate<'_>) -> bool {
    cert.is_ca()
}

/// The mesh name of a CA certificate, from its single `spiffe://MESH` URI SAN.
pub(crate) fn ca_mesh(cert: &X509Certificate<'_>, what: &str) -> Result<String> {
    let meshes: Vec<String> = spiffe_uris(cert, what)?
        .into_iter()
        .filter_map(|uri| {
            let rest = uri.strip_prefix(SPIFFE_PREFIX)?;
            (!rest.contains('/')).then(|| rest.to_string())
        })
        .collect();
    match meshes.as_slice() {
        [mesh] => {
            validate_name("mesh name", mesh)?;
            Ok(mesh.clone())
        }
        [] => Err(Error::invalid(
            what,
            "it carries no spiffe://MESH URI SAN, so it is not a mesh CA; create one with \
             `meshctl certs init`",
        )),
        _ => Err(Error::invalid(
            what,
            format!(
                "it names several meshes ({}), a mesh CA names exactly one",
                meshes.join(", ")
            ),
        )),
    }
}

/// One DER certificate as PEM text.
pub(crate) fn to_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}
