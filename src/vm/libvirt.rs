//! The libvirt driver of the registry: a libvirt domain with an `<interface type='udp'>` (the
//! one-frame-per-datagram format of a vnetd `dgram` interface) is moved with `virsh migrate
//! --live`, its interface pointed at the destination daemon's `dgram` interface in the
//! migration XML (the guest's card and MAC are unchanged, so the ABI is the same).
//!
//! libvirt's `dumpxml` is canonical (single quotes, `address` before `port`), which is what
//! [`retarget`] reads; anything else is refused with the reason rather than guessed at.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use vnet_grammar::Mac;

/// The domain XML with the UDP interface of `mac` sending to `remote` from `local`.
pub fn retarget(
    xml: &str,
    mac: Mac,
    remote: SocketAddr,
    local: SocketAddr,
) -> Result<String, String> {
    let want = format!("<mac address='{mac}'/>");
    let mut at = 0;
    while let Some(i) = xml[at..].find("<interface type='udp'>") {
        let start = at + i;
        let end = xml[start..]
            .find("</interface>")
            .map(|e| start + e)
            .ok_or("an <interface> without </interface>")?;
        let block = &xml[start..end];
        if block.to_ascii_lowercase().contains(&want) {
            let block = set_addr(block, "<source ", remote)?;
            let block = set_addr(&block, "<local ", local)?;
            return Ok(format!("{}{block}{}", &xml[..start], &xml[end..]));
        }
        at = end;
    }
    Err(format!(
        "the domain has no <interface type='udp'> with MAC {mac}"
    ))
}

/// `<TAG address='…' port='…'` inside `block`, set to `addr`.
fn set_addr(block: &str, tag: &str, addr: SocketAddr) -> Result<String, String> {
    let i = block
        .find(tag)
        .ok_or_else(|| format!("its UDP interface has no {}…> element", tag.trim()))?;
    let close = block[i..]
        .find('>')
        .map(|c| i + c)
        .ok_or("an unclosed element")?;
    let element = &block[i..close];
    let (Some(a), Some(p)) = (element.find(" address='"), element.find(" port='")) else {
        return Err(format!("`{element}>` lacks address='…' port='…'"));
    };
    let value_end = |from: usize| element[from..].find('\'').map(|e| from + e);
    let (a0, p0) = (a + " address='".len(), p + " port='".len());
    let (Some(a1), Some(p1)) = (value_end(a0), value_end(p0)) else {
        return Err(format!("`{element}>`: an unclosed attribute"));
    };
    if a1 > p {
        return Err(format!("`{element}>`: expected address before port"));
    }
    let new = format!(
        "{}{}{}{}{}",
        &element[..a0],
        addr.ip(),
        &element[a1..p0],
        addr.port(),
        &element[p1..]
    );
    Ok(format!("{}{new}{}", &block[..i], &block[close..]))
}

/// Runs virsh on connection `uri`; its stdout, or its stderr as the error.
pub fn virsh(uri: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("virsh")
        .arg("-c")
        .arg(uri)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run virsh (package libvirt-clients): {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "virsh -c {uri} {}: {}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Migrates `domain` live from `uri` to `dest`, its UDP interface (MAC `mac`) sending to
/// `remote` from `local`; `scratch` is a directory for the migration XML. Returns the
/// downtime libvirt reports, when it does.
pub fn migrate(
    uri: &str,
    dest: &str,
    domain: &str,
    mac: Mac,
    remote: SocketAddr,
    local: SocketAddr,
    scratch: &Path,
) -> Result<Option<u64>, String> {
    let xml = virsh(uri, &["dumpxml", "--migratable", domain])?;
    let xml = retarget(&xml, mac, remote, local)?;
    let file = scratch.join(format!(".{domain}.{}.migrate.xml", std::process::id()));
    std::fs::write(&file, xml).map_err(|e| format!("{}: {e}", file.display()))?;
    let migrate_uri = format!("tcp://{}", remote.ip());
    let path = file.to_string_lossy().into_owned();
    let args = [
        "migrate",
        "--live",
        "--xml",
        &path,
        domain,
        dest,
        "--migrateuri",
        &migrate_uri,
    ];
    let result = virsh(uri, &args);
    let _ = std::fs::remove_file(&file);
    result?;
    let info = virsh(dest, &["domjobinfo", "--completed", domain]).unwrap_or_default();
    Ok(downtime_ms(&info))
}

/// `Total downtime:   234          ms` of `virsh domjobinfo`.
fn downtime_ms(info: &str) -> Option<u64> {
    let line = info.lines().find(|l| l.starts_with("Total downtime:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = "<domain type='qemu'>\n  <devices>\n    <interface type='network'>\n      <mac address='52:54:00:00:00:09'/>\n    </interface>\n    <interface type='udp'>\n      <mac address='52:54:00:d7:00:01'/>\n      <source address='127.0.0.1' port='16000'>\n        <local address='127.0.0.1' port='16001'/>\n      </source>\n      <model type='virtio'/>\n    </interface>\n  </devices>\n</domain>\n";

    #[test]
    fn the_udp_interface_of_the_mac_is_repointed() {
        let mac = Mac::parse("52:54:00:d7:00:01").unwrap();
        let out = retarget(
            XML,
            mac,
            "127.9.0.3:6000".parse().unwrap(),
            "127.9.0.3:41000".parse().unwrap(),
        )
        .unwrap();
        assert!(
            out.contains("<source address='127.9.0.3' port='6000'>"),
            "{out}"
        );
        assert!(
            out.contains("<local address='127.9.0.3' port='41000'/>"),
            "{out}"
        );
        assert_eq!(
            out.replace("127.9.0.3' port='6000", "127.0.0.1' port='16000")
                .replace("127.9.0.3' port='41000", "127.0.0.1' port='16001"),
            XML
        );
        let other = Mac::parse("52:54:00:00:00:09").unwrap();
        let e = retarget(
            XML,
            other,
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        )
        .unwrap_err();
        assert!(
            e.contains("no <interface type='udp'> with MAC 52:54:00:00:00:09"),
            "{e}"
        );
        let broken = XML.replace(
            "<local address='127.0.0.1' port='16001'/>",
            "<local port='16001'/>",
        );
        let e = retarget(
            &broken,
            mac,
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        )
        .unwrap_err();
        assert!(e.contains("lacks address"), "{e}");
    }

    #[test]
    fn downtime_is_read_from_domjobinfo() {
        let info = "Job type:         Completed\nTotal downtime:   234          ms\nDowntime w/o network: 212 ms\n";
        assert_eq!(downtime_ms(info), Some(234));
        assert_eq!(downtime_ms("Job type: None\n"), None);
    }
}
