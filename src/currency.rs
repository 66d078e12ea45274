//! Currencies: ctrbid prices in USD (campaign goals and caps are USD) and converts at
//! the edges with a configured exchange-rate table (`[bidding.exchange_rates]`, USD per
//! unit of each currency).
//!
//! A request's floors are converted to USD before selection and pricing; the bid is
//! priced in USD and converted into the currency it is sent in: USD when the request
//! allows it (or names none), else the first currency of `cur` that has a rate. A
//! request that allows only currencies without a rate gets no bid, and so does an imp
//! whose `bidfloorcur` has no rate.

use std::collections::HashMap;

/// The currency campaigns are priced in.
pub const BASE: &str = "USD";

/// USD per unit of each known currency. Invariant: codes are upper-case, rates finite
/// and positive, and `USD` maps to 1.
#[derive(Debug, Clone)]
pub struct Rates {
    usd_per_unit: HashMap<String, f64>,
}

impl Rates {
    /// Builds the table from config (`code -> USD per unit`); codes are case-insensitive.
    pub fn new(table: &HashMap<String, f64>) -> Result<Rates, String> {
        let mut usd_per_unit = HashMap::with_capacity(table.len() + 1);
        for (code, &rate) in table {
            let upper = code.to_ascii_uppercase();
            if upper.len() != 3 || !upper.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(format!("bidding.exchange_rates: {code:?} is not an ISO-4217 code"));
            }
            if !(rate.is_finite() && rate > 0.0) {
                return Err(format!("bidding.exchange_rates.{code} must be a positive number, got {rate}"));
            }
            if upper == BASE && rate != 1.0 {
                return Err(format!("bidding.exchange_rates.{BASE} must be 1 (campaigns are priced in {BASE})"));
            }
            usd_per_unit.insert(upper, rate);
        }
        usd_per_unit.insert(BASE.to_string(), 1.0);
        Ok(Rates { usd_per_unit })
    }

    /// USD per unit of `code` (case-insensitive), if known.
    pub fn usd_per_unit(&self, code: &str) -> Option<f64> {
        if code.eq_ignore_ascii_case(BASE) {
            return Some(1.0);
        }
        self.usd_per_unit.get(&code.to_ascii_uppercase()).copied()
    }

    /// The currency to bid in for a request allowing `allowed` (empty: the exchange's
    /// default, USD): its code and USD per unit.
    pub fn bid_currency<S: AsRef<str>>(&self, allowed: &[S]) -> Option<(&str, f64)> {
        if allowed.is_empty() || allowed.iter().any(|c| c.as_ref().eq_ignore_ascii_case(BASE)) {
            return Some((BASE, 1.0));
        }
        allowed.iter().find_map(|c| {
            let (code, rate) = self.usd_per_unit.get_key_value(&c.as_ref().to_ascii_uppercase())?;
            Some((code.as_str(), *rate))
        })
    }

    /// A floor in `currency` (USD when `None`) converted to USD; `None` for an unknown
    /// currency.
    pub fn floor_in_usd(&self, floor: f64, currency: Option<&str>) -> Option<f64> {
        Some(floor * self.usd_per_unit(currency.unwrap_or(BASE))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates() -> Rates {
        Rates::new(&HashMap::from([("eur".to_string(), 1.25), ("GBP".to_string(), 1.5)])).unwrap()
    }

    #[test]
    fn bid_currency_prefers_usd_then_the_first_known() {
        let r = rates();
        assert_eq!(r.bid_currency::<&str>(&[]), Some(("USD", 1.0)));
        assert_eq!(r.bid_currency(&["EUR", "usd"]), Some(("USD", 1.0)));
        assert_eq!(r.bid_currency(&["JPY", "gbp", "EUR"]), Some(("GBP", 1.5)));
        assert_eq!(r.bid_currency(&["JPY"]), None);
    }

    #[test]
    fn floors_convert_to_usd() {
        let r = rates();
        assert_eq!(r.floor_in_usd(2.0, None), Some(2.0));
        assert_eq!(r.floor_in_usd(2.0, Some("EUR")), Some(2.5));
        assert_eq!(r.floor_in_usd(2.0, Some("JPY")), None);
    }

    #[test]
    fn bad_tables_are_refused_with_the_key() {
        let bad = |k: &str, v: f64| Rates::new(&HashMap::from([(k.to_string(), v)])).unwrap_err();
        assert!(bad("EURO", 1.0).contains("EURO"));
        assert!(bad("EUR", 0.0).contains("EUR"));
        assert!(bad("EUR", f64::NAN).contains("EUR"));
        assert!(bad("USD", 2.0).contains("USD"));
    }
}
