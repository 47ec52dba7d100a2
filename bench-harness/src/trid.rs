//! SPDK-style transport ID strings: `trtype:tcp adrfam:ipv4 traddr:127.0.0.1 trsvcid:4420
//! subnqn:nqn...`. Pure parsing, no threading concerns.
//!
//! Keys are case-insensitive and separated from their value by the first `:` or `=` (NQNs and
//! IPv6 addresses contain colons themselves). Pairs are separated by whitespace.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// The NQN of the well-known discovery subsystem.
pub const DISCOVERY_NQN: &str = "nqn.2014-08.org.nvmexpress.discovery";

/// Transport types the initiator knows about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrType {
    Tcp,
    Rdma,
}

/// Address families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AdrFam {
    Ipv4,
    Ipv6,
}

/// A parsed transport ID.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TransportId {
    pub trtype: TrType,
    pub adrfam: AdrFam,
    pub traddr: IpAddr,
    pub trsvcid: u16,
    /// `None`: ask the discovery subsystem and use the first NVM subsystem it lists.
    pub subnqn: Option<String>,
    /// Optional host NQN (`hostnqn:` key, as `spdk_nvme_perf` accepts); `--hostnqn` wins.
    pub hostnqn: Option<String>,
    /// Optional namespace restriction (`ns:` key).
    pub nsid: Option<u32>,
}

impl TransportId {
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.traddr, self.trsvcid)
    }
}

impl fmt::Display for TransportId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let trtype = match self.trtype {
            TrType::Tcp => "tcp",
            TrType::Rdma => "rdma",
        };
        let adrfam = match self.adrfam {
            AdrFam::Ipv4 => "ipv4",
            AdrFam::Ipv6 => "ipv6",
        };
        write!(
            f,
            "trtype:{trtype} adrfam:{adrfam} traddr:{} trsvcid:{}",
            self.traddr, self.trsvcid
        )?;
        if let Some(n) = &self.subnqn {
            write!(f, " subnqn:{n}")?;
        }
        Ok(())
    }
}

/// Why a transport ID string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TridError {
    #[error("transport id is empty")]
    Empty,
    #[error("transport id field {field:?} has no key:value form")]
    NoSeparator { field: String },
    #[error(
        "unknown transport id key {key:?} (known: trtype adrfam traddr trsvcid subnqn hostnqn ns)"
    )]
    UnknownKey { key: String },
    #[error("transport id key {key:?} given twice")]
    Duplicate { key: String },
    #[error("transport id lacks {key:?}")]
    Missing { key: &'static str },
    #[error("unsupported trtype {value:?} (tcp or rdma)")]
    TrType { value: String },
    #[error("unsupported adrfam {value:?} (ipv4 or ipv6)")]
    AdrFam { value: String },
    #[error("traddr {value:?} is not an IP address")]
    TrAddr { value: String },
    #[error("traddr {addr} does not match adrfam {adrfam}")]
    FamilyMismatch { addr: IpAddr, adrfam: &'static str },
    #[error("trsvcid {value:?} is not a port number")]
    TrSvcId { value: String },
    #[error("invalid nqn {value:?}: {reason}")]
    Nqn { value: String, reason: &'static str },
    #[error("ns {value:?} is not a namespace id (1..0xfffffffe)")]
    Nsid { value: String },
}

/// Checks the NQN rules a target will enforce anyway, so the user gets the reason locally.
pub fn check_nqn(value: &str) -> Result<(), TridError> {
    let bad = |reason| TridError::Nqn {
        value: value.to_string(),
        reason,
    };
    if value.is_empty() {
        return Err(bad("empty"));
    }
    if value.len() > 223 {
        return Err(bad("longer than 223 bytes"));
    }
    if !value.starts_with("nqn.") {
        return Err(bad("does not start with \"nqn.\""));
    }
    if value.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(bad("contains spaces or control characters"));
    }
    Ok(())
}

impl std::str::FromStr for TransportId {
    type Err = TridError;

    fn from_str(s: &str) -> Result<Self, TridError> {
        let mut trtype = None;
        let mut adrfam = None;
        let mut traddr = None;
        let mut trsvcid = None;
        let mut subnqn = None;
        let mut hostnqn = None;
        let mut nsid = None;
        let mut any = false;
        for field in s.split_whitespace() {
            any = true;
            let sep = field
                .find([':', '='])
                .ok_or_else(|| TridError::NoSeparator {
                    field: field.to_string(),
                })?;
            let (key, value) = (&field[..sep], &field[sep + 1..]);
            let key_l = key.to_ascii_lowercase();
            let slot: &mut Option<String> = match key_l.as_str() {
                "trtype" => &mut trtype,
                "adrfam" => &mut adrfam,
                "traddr" => &mut traddr,
                "trsvcid" => &mut trsvcid,
                "subnqn" => &mut subnqn,
                "hostnqn" => &mut hostnqn,
                "ns" | "nsid" => &mut nsid,
                _ => {
                    return Err(TridError::UnknownKey {
                        key: key.to_string(),
                    })
                }
            };
            if slot.is_some() {
                return Err(TridError::Duplicate { key: key_l });
            }
            *slot = Some(value.to_string());
        }
        if !any {
            return Err(TridError::Empty);
        }
        let trtype_s = trtype.ok_or(TridError::Missing { key: "trtype" })?;
        let trtype = match trtype_s.to_ascii_lowercase().as_str() {
            "tcp" => TrType::Tcp,
            "rdma" => TrType::Rdma,
            _ => return Err(TridError::TrType { value: trtype_s }),
        };
        let traddr_s = traddr.ok_or(TridError::Missing { key: "traddr" })?;
        let addr: IpAddr = traddr_s
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| TridError::TrAddr {
                value: traddr_s.clone(),
            })?;
        let adrfam = match adrfam.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None => {
                if addr.is_ipv4() {
                    AdrFam::Ipv4
                } else {
                    AdrFam::Ipv6
                }
            }
            Some("ipv4") => AdrFam::Ipv4,
            Some("ipv6") => AdrFam::Ipv6,
            Some(_) => {
                return Err(TridError::AdrFam {
                    value: adrfam.unwrap_or_default(),
                })
            }
        };
        match (adrfam, addr) {
            (AdrFam::Ipv4, IpAddr::V6(_)) => {
                return Err(TridError::FamilyMismatch {
                    addr,
                    adrfam: "ipv4",
                })
            }
            (AdrFam::Ipv6, IpAddr::V4(_)) => {
                return Err(TridError::FamilyMismatch {
                    addr,
                    adrfam: "ipv6",
                })
            }
            _ => {}
        }
        let trsvcid = match trsvcid {
            None => 4420,
            Some(v) => match v.parse::<u16>() {
                Ok(p) if p != 0 => p,
                _ => return Err(TridError::TrSvcId { value: v }),
            },
        };
        if let Some(n) = &subnqn {
            check_nqn(n)?;
        }
        if let Some(n) = &hostnqn {
            check_nqn(n)?;
        }
        let nsid = match nsid {
            None => None,
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (1..0xffff_ffff).contains(&n) => Some(n),
                _ => return Err(TridError::Nsid { value: v }),
            },
        };
        Ok(TransportId {
            trtype,
            adrfam,
            traddr: addr,
            trsvcid,
            subnqn,
            hostnqn,
            nsid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<TransportId, TridError> {
        s.parse()
    }

    #[test]
    fn full_tcp_trid_parses() {
        let t = parse("trtype:tcp adrfam:ipv4 traddr:127.0.0.1 trsvcid:4420 subnqn:nqn.2016-06.io.spdk:cnode1")
            .expect("valid trid");
        assert_eq!(t.trtype, TrType::Tcp);
        assert_eq!(t.adrfam, AdrFam::Ipv4);
        assert_eq!(t.socket_addr().to_string(), "127.0.0.1:4420");
        assert_eq!(t.subnqn.as_deref(), Some("nqn.2016-06.io.spdk:cnode1"));
        assert_eq!(t.nsid, None);
    }

    #[test]
    fn keys_are_case_insensitive_and_accept_equals() {
        let t = parse("TRTYPE=TCP TRADDR=::1 TRSVCID=4421 ns:2").expect("valid trid");
        assert_eq!(t.adrfam, AdrFam::Ipv6);
        assert_eq!(t.trsvcid, 4421);
        assert_eq!(t.nsid, Some(2));
        assert_eq!(t.subnqn, None);
    }

    #[test]
    fn rdma_is_accepted_by_the_parser() {
        let t = parse("trtype:rdma traddr:10.0.0.1").expect("rdma parses");
        assert_eq!(t.trtype, TrType::Rdma);
        assert_eq!(t.trsvcid, 4420);
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(parse("  "), Err(TridError::Empty));
        assert_eq!(
            parse("traddr:1.2.3.4"),
            Err(TridError::Missing { key: "trtype" })
        );
        assert_eq!(
            parse("trtype:tcp"),
            Err(TridError::Missing { key: "traddr" })
        );
        assert!(matches!(
            parse("trtype:fc traddr:1.2.3.4"),
            Err(TridError::TrType { .. })
        ));
        assert!(matches!(
            parse("trtype:tcp traddr:localhost"),
            Err(TridError::TrAddr { .. })
        ));
        assert!(matches!(
            parse("trtype:tcp traddr:1.2.3.4 trsvcid:99999"),
            Err(TridError::TrSvcId { .. })
        ));
        assert!(matches!(
            parse("trtype:tcp adrfam:ipv6 traddr:1.2.3.4"),
            Err(TridError::FamilyMismatch { .. })
        ));
        assert!(matches!(
            parse("trtype:tcp adrfam:ib traddr:1.2.3.4"),
            Err(TridError::AdrFam { .. })
        ));
        assert!(matches!(
            parse("trtype:tcp traddr:1.2.3.4 bogus:1"),
            Err(TridError::UnknownKey { .. })
        ));
        assert!(matches!(
            parse("trtype:tcp trtype:tcp traddr:1.2.3.4"),
            Err(TridError::Duplicate { .. })
        ));
        assert!(matches!(
            parse("trtype:tcp traddr:1.2.3.4 subnqn:cnode1"),
            Err(TridError::Nqn { .. })
        ));
        assert!(matches!(
            parse("trtype:tcp 1.2.3.4"),
            Err(TridError::NoSeparator { .. })
        ));
        assert!(matches!(
            parse("trtype:tcp traddr:1.2.3.4 ns:0"),
            Err(TridError::Nsid { .. })
        ));
        // The message is one readable line.
        let msg = parse("trtype:tcp traddr:1.2.3.4 trsvcid:x")
            .expect_err("bad port")
            .to_string();
        assert_eq!(msg, "trsvcid \"x\" is not a port number");
    }
}
