//! An IANA time zone name (`Asia/Shanghai`, `UTC`), as people plan in: a lesson's, a user's.
//!
//! Parsed for its shape here (the domain module is a leaf and carries no zone database);
//! whether the zone exists is asked of PostgreSQL's own database (`pg_timezone_names`) where a
//! name is stored, so the server and the SQL that converts times agree on what exists.

use super::InvalidInput;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeZone(String);

impl TimeZone {
    pub fn parse(s: &str) -> Result<TimeZone, InvalidInput> {
        let s = s.trim();
        if (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'+'))
        {
            Ok(TimeZone(s.to_string()))
        } else {
            Err(InvalidInput {
                field: "time_zone",
                reason: "must be an IANA time zone name such as Asia/Shanghai",
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_zones_pass_and_other_text_does_not() {
        for ok in [
            "UTC",
            "Asia/Shanghai",
            "America/Argentina/Buenos_Aires",
            "Etc/GMT+8",
        ] {
            assert_eq!(TimeZone::parse(ok).unwrap().as_str(), ok);
        }
        assert_eq!(
            TimeZone::parse("  Europe/Paris ").unwrap().as_str(),
            "Europe/Paris"
        );
        for bad in [
            "",
            "Asia/Shang hai",
            "Europe/Paris;DROP",
            "x".repeat(65).as_str(),
            "Zürich",
        ] {
            assert!(TimeZone::parse(bad).is_err(), "{bad:?}");
        }
    }
}
