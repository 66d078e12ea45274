//! Candidate selection: which creatives may bid on an imp, and through which deal.
//!
//! A creative is a candidate for an imp when (the rules the simulator's logging policy
//! uses too): its format fits the slot (banner size equals `w`/`h` or a `format[]`
//! entry; video creative duration within the imp's `minduration..=maxduration`; native
//! for native), its campaign's targeting matches the device, its campaign category is
//! not in `bcat` (`IAB2` also blocks `IAB2-3`), its `adomain` is not in `badv`, and its
//! campaign's `max_cpm` reaches the floor that applies.
//!
//! Beyond what the simulator sends, the rules real requests need: a banner's
//! `banner_type` not in `btype`; no creative attribute in the slot's `battr`; a video's
//! MIME type and VAST protocol among the player's `mimes` and `protocols` (when both
//! sides name them); a native creative that fills every required asset
//! ([`crate::openrtb::native`]); markup without plain-HTTP URLs on a `secure` imp; the
//! campaign's app not in `bapp`; and the campaign's daily budget not spent.
//!
//! Deals: an imp's deal is open to a campaign when the campaign lists the deal id, the
//! deal's `wseat` (if any) names our seat, and its `wadomain` (if any) names the
//! campaign's domain. Such a candidate bids through the deal, at the deal's floor (deal
//! floor takes precedence over the imp's). A campaign with no open deal bids in the
//! open auction at the imp floor, unless the imp is a private auction.
//!
//! The [`Selector`] indexes creatives by banner size and by format, each list split by
//! the countries the campaigns name (campaigns naming none in every part), so an imp
//! only looks at creatives that can fill it and may be shown in its country, and keeps
//! each creative's feature keys hashed and its campaign's targeting compiled
//! ([`super::reach`]) once per catalog load.
//!
//! **Rank and cap.** Every index list is in *rank* order: the campaign's `max_cpm`,
//! highest first, ties in catalog order. An imp's lists are merged by rank and the scan
//! stops after `Limits::per_imp` candidates (the ones that can pay most, not the first
//! found) or, without deals, at the first campaign under the floor. Invariant: the
//! indexed path selects exactly what [`Selector::select_imp_linear`], a rank-order scan
//! of the whole catalog, selects, in the same order (a unit test holds them to it).

use super::reach::{CompiledTargeting, RequestReach, Vocabulary};
use super::{Campaign, Catalog, Creative, Format};
use crate::currency::Rates;
use crate::features::{CandidateKeys, Extractor};
use crate::openrtb::native;
use crate::openrtb::{BidRequest, Imp};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

/// One creative that may bid on one imp of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Index into `request.imp`.
    pub imp: u16,
    /// Index into `catalog.creatives`.
    pub creative: u32,
    /// Index into the imp's `pmp.deals` when the bid goes through a deal.
    pub deal: Option<u8>,
}

/// All candidates of one request, grouped by imp in imp order.
pub type Candidates = Vec<Candidate>;

/// What an imp offers, in USD, worked out once per imp by the bid path.
#[derive(Debug, Default, Clone)]
pub struct ImpTerms {
    /// The imp's floor in USD; `None` when its currency has no rate (open auction closed to us).
    pub floor_usd: Option<f64>,
    /// Deals open to our seat: (index into `pmp.deals`, the deal's floor in USD).
    pub deals: Vec<(u8, f64)>,
    /// Only deal bids may win (`pmp.private_auction = 1`).
    pub private: bool,
}

impl ImpTerms {
    /// The terms of `imp` for a bidder with seat `seat`: floors converted to USD, and
    /// the deals whose `wseat` lets the seat in. A deal without a floor inherits the
    /// imp's; a deal floor's currency defaults to USD (OpenRTB 2.6 3.2.12).
    pub fn of(imp: &Imp<'_>, seat: &str, rates: &Rates) -> ImpTerms {
        let floor_usd = rates.floor_in_usd(imp.bidfloor.unwrap_or(0.0), imp.bidfloorcur.as_deref());
        let Some(pmp) = &imp.pmp else {
            return ImpTerms { floor_usd, deals: Vec::new(), private: false };
        };
        let mut deals = Vec::new();
        for (i, deal) in pmp.deals.iter().enumerate().take(usize::from(u8::MAX)) {
            let named = deal.id.as_deref().is_some_and(|id| !id.is_empty());
            let seat_ok = deal.wseat.is_empty() || deal.wseat.iter().any(|w| w == seat);
            let floor = match deal.bidfloor {
                Some(f) => rates.floor_in_usd(f, deal.bidfloorcur.as_deref()),
                None => floor_usd,
            };
            if let (true, true, Some(floor)) = (named, seat_ok, floor) {
                deals.push((i as u8, floor));
            }
        }
        ImpTerms { floor_usd, deals, private: pmp.private_auction == Some(true) }
    }

    /// The floor in USD a candidate bidding through `deal` must reach.
    pub fn floor_for(&self, deal: Option<u8>) -> f64 {
        match deal {
            Some(d) => self.deals.iter().find(|(i, _)| *i == d).map_or(f64::INFINITY, |(_, f)| *f),
            None => self.floor_usd.unwrap_or(f64::INFINITY),
        }
    }
}

/// What selection reads of a creative besides its campaign.
#[derive(Debug, Clone, Copy)]
struct Traits {
    /// The markup loads nothing over plain HTTP.
    secure: bool,
    /// The creative lists attributes (checked against `battr`).
    has_attr: bool,
    /// `banner_type`, 0 when none.
    banner_type: u8,
}

/// The catalog, indexed for selection. Immutable once built, except the per-campaign
/// "budget spent" flags, which the notice path sets.
#[derive(Debug)]
pub struct Selector {
    catalog: Catalog,
    /// `campaign_of[creative]` indexes `catalog.campaigns`.
    campaign_of: Vec<u32>,
    campaign_by_id: HashMap<String, u32>,
    keys: Vec<CandidateKeys>,
    /// Per creative, what selection checks, packed so a candidate costs one cache line.
    traits: Vec<Traits>,
    /// `exhausted[campaign]`: today's budget is spent; the campaign does not bid.
    exhausted: Vec<AtomicBool>,
    /// The catalog's countries and OS names, and `targeting[campaign]` compiled over them.
    vocabulary: Vocabulary,
    targeting: Vec<CompiledTargeting>,
    /// True once any campaign is exhausted (until a new day): skips the per-candidate load.
    any_exhausted: AtomicBool,
    /// `rank[creative]`: its place when every creative is ordered by its campaign's
    /// `max_cpm`, highest first (ties by catalog order). Every index list below is in
    /// rank order, and `by_rank` is the whole catalog in it.
    rank: Vec<u32>,
    by_rank: Vec<u32>,
    /// The index lists, split by the request's country (see [`Shards`]).
    by_size: HashMap<(u32, u32), Shards<u32>>,
    video: Shards<VideoEntry>,
    /// MIME types of video creatives; `VideoEntry::mime` indexes it (0: none given).
    video_mimes: Vec<String>,
    /// Native creatives that have assets, with their sizes precomputed.
    native: Shards<(u32, native::NativeShape)>,
}

/// Splitting a list by country may make it at most this many times longer (campaigns
/// naming no country are in every shard); beyond it, one shard serves every country.
const MAX_SHARD_GROWTH: usize = 4;

/// One rank-ordered index list, split by the request's country: shard 0 holds the
/// creatives whose campaign names no country (all a request of an unknown country can
/// be shown), shard `1 + b` those and the ones naming country `b` of the vocabulary
/// ([`Vocabulary::country_slot`]). Every shard keeps rank order. The split only prunes:
/// each creative is still checked against its campaign's whole targeting.
#[derive(Debug)]
struct Shards<T> {
    /// One list (no split), or one per country slot.
    shards: Vec<Vec<T>>,
}

impl<T: Clone> Shards<T> {
    /// Splits `list` (in rank order) by the country slots `slots_of` gives each item
    /// (`None`: names no country), over `slots` slots.
    fn split<'a>(list: Vec<T>, slots: usize, slots_of: impl Fn(&T) -> Option<&'a [usize]>) -> Shards<T> {
        let total: usize = list.iter().map(|x| slots_of(x).map_or(slots, <[usize]>::len)).sum();
        if slots == 1 || total > MAX_SHARD_GROWTH * list.len() {
            return Shards { shards: vec![list] };
        }
        let mut shards = vec![Vec::new(); slots];
        for x in &list {
            match slots_of(x) {
                None => shards.iter_mut().for_each(|s| s.push(x.clone())),
                Some(named) => named.iter().for_each(|&slot| shards[slot].push(x.clone())),
            }
        }
        Shards { shards }
    }

    /// The list for a request in country `slot`.
    fn get(&self, slot: usize) -> &[T] {
        match self.shards.as_slice() {
            [one] => one,
            all => &all[slot],
        }
    }

    fn is_empty(&self) -> bool {
        self.shards.iter().all(Vec::is_empty)
    }
}

/// A video creative as selection reads it.
#[derive(Debug, Clone, Copy)]
struct VideoEntry {
    creative: u32,
    duration: u32,
    /// VAST protocol code; 0 when none given.
    protocol: u16,
    /// Index into `Selector::video_mimes`.
    mime: u16,
}

impl Selector {
    /// Indexes a checked catalog (see [`Catalog::check`]).
    pub fn new(catalog: Catalog, extractor: &Extractor) -> Selector {
        let campaigns = catalog.campaign_index();
        let mut campaign_of = Vec::with_capacity(catalog.creatives.len());
        let mut keys = Vec::with_capacity(catalog.creatives.len());
        let mut by_size: HashMap<(u32, u32), Vec<u32>> = HashMap::new();
        let (mut video, mut native) = (Vec::new(), Vec::new());
        let mut video_mimes = vec![String::new()];
        for (i, cr) in catalog.creatives.iter().enumerate() {
            let ci = campaigns[cr.campaign_id.as_str()];
            campaign_of.push(ci as u32);
            keys.push(extractor.candidate_keys(&catalog.campaigns[ci], cr));
            match cr.format {
                Format::Banner { w, h } => by_size.entry((w, h)).or_default().push(i as u32),
                Format::Video { duration, .. } => {
                    let mime = match cr.mime.as_deref() {
                        None => 0,
                        Some(m) => match video_mimes.iter().position(|k| k.eq_ignore_ascii_case(m)) {
                            Some(k) => k,
                            None => {
                                video_mimes.push(m.to_string());
                                video_mimes.len() - 1
                            }
                        },
                    };
                    let (protocol, mime) = (cr.protocol.unwrap_or(0), u16::try_from(mime).unwrap_or(0));
                    video.push(VideoEntry { creative: i as u32, duration, protocol, mime });
                }
                Format::Native => {
                    if let Some(assets) = &cr.native {
                        native.push((i as u32, native::NativeShape::of(assets)));
                    }
                }
            }
        }
        let max_cpm = |c: u32| catalog.campaigns[campaign_of[c as usize] as usize].max_cpm;
        let mut by_rank: Vec<u32> = (0..catalog.creatives.len() as u32).collect();
        by_rank.sort_by(|&a, &b| max_cpm(b).total_cmp(&max_cpm(a)).then(a.cmp(&b)));
        let mut rank = vec![0u32; by_rank.len()];
        for (r, &c) in by_rank.iter().enumerate() {
            rank[c as usize] = r as u32;
        }
        by_size.values_mut().for_each(|list| list.sort_by_key(|&c| rank[c as usize]));
        video.sort_by_key(|v| rank[v.creative as usize]);
        native.sort_by_key(|(c, _)| rank[*c as usize]);
        let vocabulary = Vocabulary::of(catalog.campaigns.iter().map(|c| &c.targeting));
        let country_slots: Vec<Option<Vec<usize>>> =
            catalog.campaigns.iter().map(|c| vocabulary.slots_of(&c.targeting)).collect();
        let slots = vocabulary.country_slots();
        let slots_of = |c: u32| country_slots[campaign_of[c as usize] as usize].as_deref();
        let by_size =
            by_size.into_iter().map(|(size, list)| (size, Shards::split(list, slots, |&c| slots_of(c)))).collect();
        let video = Shards::split(video, slots, |v: &VideoEntry| slots_of(v.creative));
        let native = Shards::split(native, slots, |n: &(u32, native::NativeShape)| slots_of(n.0));
        let campaign_by_id = campaigns.into_iter().map(|(id, i)| (id.to_string(), i as u32)).collect();
        let traits = catalog
            .creatives
            .iter()
            .map(|c| Traits {
                secure: c.is_secure(),
                has_attr: !c.attr.is_empty(),
                banner_type: c.banner_type.unwrap_or(0),
            })
            .collect();
        let exhausted = catalog.campaigns.iter().map(|_| AtomicBool::new(false)).collect();
        let targeting = catalog.campaigns.iter().map(|c| vocabulary.compile(&c.targeting)).collect();
        Selector {
            catalog,
            campaign_of,
            campaign_by_id,
            keys,
            traits,
            exhausted,
            vocabulary,
            targeting,
            any_exhausted: AtomicBool::new(false),
            rank,
            by_rank,
            by_size,
            video,
            video_mimes,
            native,
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn creative(&self, i: u32) -> &Creative {
        &self.catalog.creatives[i as usize]
    }

    pub fn campaign_of(&self, creative: u32) -> &Campaign {
        &self.catalog.campaigns[self.campaign_of[creative as usize] as usize]
    }

    /// Index (in `catalog.campaigns`) of a creative's campaign.
    pub fn campaign_index_of(&self, creative: u32) -> u32 {
        self.campaign_of[creative as usize]
    }

    /// Index of the campaign with this id.
    pub fn campaign_index(&self, id: &str) -> Option<u32> {
        self.campaign_by_id.get(id).copied()
    }

    pub fn keys(&self, creative: u32) -> &CandidateKeys {
        &self.keys[creative as usize]
    }

    /// Marks a campaign's budget spent (or not, on a new day); returns whether it was
    /// marked spent before.
    pub fn set_exhausted(&self, campaign: u32, spent: bool) -> bool {
        let Some(flag) = self.exhausted.get(campaign as usize) else { return false };
        if spent {
            self.any_exhausted.store(true, Ordering::Relaxed);
        }
        flag.swap(spent, Ordering::Relaxed)
    }

    /// Whether the campaign's budget is spent today.
    pub fn is_exhausted(&self, campaign: u32) -> bool {
        self.exhausted.get(campaign as usize).is_some_and(|f| f.load(Ordering::Relaxed))
    }

    /// Campaigns whose budget is spent today.
    pub fn exhausted_count(&self) -> usize {
        if !self.any_exhausted.load(Ordering::Relaxed) {
            return 0;
        }
        self.exhausted.iter().filter(|f| f.load(Ordering::Relaxed)).count()
    }

    /// A new budget day: every campaign may bid again.
    pub fn clear_exhausted(&self) {
        self.any_exhausted.store(false, Ordering::Relaxed);
        for flag in &self.exhausted {
            flag.store(false, Ordering::Relaxed);
        }
    }

    /// Appends to `out` the creatives that may bid on `imp` on the `terms` the bid path
    /// worked out for it: in rank order (highest `max_cpm` first), at most
    /// `limits.per_imp` of them. The size and format index lists are merged by rank, and
    /// the scan ends once the cap is reached or, without deals, at the first campaign
    /// under the floor, so the work per imp is bounded by the cap rather than the
    /// catalog; each list is the request country's part ([`Shards`]): 55 µs per request
    /// for 100,000 campaigns against 2.0 ms for a scan (`benches/select.rs`).
    pub fn select_imp(
        &self,
        req: &BidRequest<'_>,
        imp_index: u16,
        imp: &Imp<'_>,
        terms: &ImpTerms,
        limits: Limits<'_>,
        out: &mut Candidates,
    ) -> Selected {
        let Some(mut scan) = Scan::new(self, req, imp_index, imp, terms, limits, out.len()) else {
            return Selected::default();
        };
        let mut lists: [(Source<'_>, usize); MAX_SIZES + 2] = [(Source::Empty, 0); MAX_SIZES + 2];
        let mut n = 0;
        let country = self.vocabulary.country_slot(req.country());
        if let Some(banner) = &imp.banner {
            let mut seen: [(u32, u32); MAX_SIZES] = [(0, 0); MAX_SIZES];
            for (k, size) in banner.sizes().take(MAX_SIZES).enumerate() {
                if !seen[..k].contains(&size) {
                    if let Some(list) = self.by_size.get(&size) {
                        lists[n] = (Source::Banner(list.get(country)), 0);
                        n += 1;
                    }
                }
                seen[k] = size;
            }
        }
        if imp.video.is_some() && !self.video.is_empty() {
            lists[n] = (Source::Video(self.video.get(country)), 0);
            n += 1;
        }
        if imp.native.as_ref().is_some_and(|n| n.request.is_some()) && !self.native.is_empty() {
            lists[n] = (Source::Native(self.native.get(country)), 0);
            n += 1;
        }
        if n == 0 {
            return scan.selected();
        }
        let lists = &mut lists[..n];
        let video = imp.video.as_ref().map(|v| VideoFit::new(self, v));
        // The rank of each list's next creative (`u32::MAX` once it is used up), so a step
        // is a minimum over at most ten integers.
        let head = |src: &Source<'_>, pos: usize| src.get(pos).map_or(u32::MAX, |c| self.rank[c as usize]);
        let mut heads = [u32::MAX; MAX_SIZES + 2];
        for (h, (src, pos)) in heads.iter_mut().zip(lists.iter()) {
            *h = head(src, *pos);
        }
        while !scan.full(out) {
            // The list whose next creative ranks highest.
            let (i, &rank) =
                heads[..n].iter().enumerate().min_by_key(|&(_, r)| *r).expect("n > 0 lists, or none to merge");
            if rank == u32::MAX {
                break;
            }
            let creative = self.by_rank[rank as usize];
            let (src, pos) = &mut lists[i];
            let at = *pos;
            *pos += 1;
            heads[i] = head(src, *pos);
            if scan.below_every_floor(creative) {
                break; // every later creative ranks lower: none reaches the floor either
            }
            match *src {
                Source::Banner(_) => {
                    let banner = imp.banner.as_ref().expect("banner lists only for a banner imp");
                    let banner_type = self.traits[creative as usize].banner_type;
                    if banner_type == 0 || !banner.btype.contains(&banner_type) {
                        scan.consider(creative, &banner.battr, out);
                    }
                }
                Source::Video(entries) => {
                    let (v, fit) = (imp.video.as_ref().expect("video imp"), video.as_ref().expect("video imp"));
                    if fit.fits(self, v, &entries[at]) {
                        scan.consider(creative, &v.battr, out);
                    }
                }
                Source::Native(entries) => {
                    let n = imp.native.as_ref().expect("native imp");
                    if n.request.as_ref().is_some_and(|r| native::fills(r, &entries[at].1)) {
                        scan.consider(creative, &n.battr, out);
                    }
                }
                Source::Empty => unreachable!("only the first `n` lists are read"),
            }
        }
        scan.selected()
    }

    /// What [`Selector::select_imp`] selects, found by testing every creative of the
    /// catalog in rank order instead of merging the slot's size and format lists: the
    /// baseline of `benches/select.rs`, and the reference the tests hold the indexed path
    /// to (the same candidates in the same order).
    pub fn select_imp_linear(
        &self,
        req: &BidRequest<'_>,
        imp_index: u16,
        imp: &Imp<'_>,
        terms: &ImpTerms,
        limits: Limits<'_>,
        out: &mut Candidates,
    ) -> Selected {
        let Some(mut scan) = Scan::new(self, req, imp_index, imp, terms, limits, out.len()) else {
            return Selected::default();
        };
        for &c in &self.by_rank {
            if scan.full(out) || scan.below_every_floor(c) {
                break;
            }
            let cr = &self.catalog.creatives[c as usize];
            match (cr.format, &imp.banner, &imp.video, &imp.native) {
                (Format::Banner { w, h }, Some(banner), _, _) => {
                    let banner_type = self.traits[c as usize].banner_type;
                    if banner.sizes().take(MAX_SIZES).any(|s| s == (w, h))
                        && (banner_type == 0 || !banner.btype.contains(&banner_type))
                    {
                        scan.consider(c, &banner.battr, out);
                    }
                }
                (Format::Video { duration, .. }, _, Some(video), _) => {
                    let (lo, hi) = (video.minduration.unwrap_or(0), video.maxduration.unwrap_or(u32::MAX));
                    let mime_ok = video.mimes.is_empty()
                        || cr.mime.as_deref().is_none_or(|m| video.mimes.iter().any(|v| v.eq_ignore_ascii_case(m)));
                    let protocol = cr.protocol.unwrap_or(0);
                    let protocol_ok =
                        video.protocols.is_empty() || protocol == 0 || video.protocols.contains(&protocol);
                    if (lo..=hi).contains(&duration) && mime_ok && protocol_ok {
                        scan.consider(c, &video.battr, out);
                    }
                }
                (Format::Native, _, _, Some(n)) => {
                    let shape = cr.native.as_ref().map(native::NativeShape::of);
                    if let (Some(request), Some(shape)) = (&n.request, shape) {
                        if native::fills(request, &shape) {
                            scan.consider(c, &n.battr, out);
                        }
                    }
                }
                _ => {}
            }
        }
        scan.selected()
    }
}

/// How far selection goes for one imp.
#[derive(Clone, Copy)]
pub struct Limits<'a> {
    /// Candidates per imp at most: the highest-ranked that pass every rule.
    pub per_imp: usize,
    /// Whether the model can value a CPA campaign (it has a conversion head); when not,
    /// CPA creatives are not candidates.
    pub pcvr: bool,
    /// The request's say over a creative that passed every catalog rule: budget
    /// pacing and frequency caps ([`crate::economics::Gate`]).
    pub admit: &'a dyn Admit,
}

impl Limits<'static> {
    /// Every candidate, CPA campaigns included.
    pub const ALL: Limits<'static> = Limits { per_imp: usize::MAX, pcvr: true, admit: &AdmitAll };
}

impl std::fmt::Debug for Limits<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits").field("per_imp", &self.per_imp).field("pcvr", &self.pcvr).finish_non_exhaustive()
    }
}

/// What the state outside the catalog says about one creative of one request, once the
/// catalog's own rules let it bid: the last check of selection, so what it counts (a
/// campaign's opportunities) are real ones. Called at most once per (imp, creative).
pub trait Admit {
    fn admits(&self, campaign: u32, creative: u32) -> bool;
}

/// Admits everything: selection by the catalog's rules alone.
#[derive(Debug, Clone, Copy, Default)]
pub struct AdmitAll;

impl Admit for AdmitAll {
    fn admits(&self, _campaign: u32, _creative: u32) -> bool {
        true
    }
}

/// What selection of one imp left out that the bid path reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Selected {
    /// A CPA creative passed every rule but was left out for want of a conversion head.
    pub cpa_dropped: bool,
}

/// Banner sizes of one imp looked at (`w`/`h` and the first `format` entries).
const MAX_SIZES: usize = 8;

/// One rank-ordered index list of [`Selector`].
#[derive(Clone, Copy)]
enum Source<'a> {
    Empty,
    Banner(&'a [u32]),
    Video(&'a [VideoEntry]),
    Native(&'a [(u32, native::NativeShape)]),
}

impl Source<'_> {
    fn get(&self, pos: usize) -> Option<u32> {
        match self {
            Source::Empty => None,
            Source::Banner(l) => l.get(pos).copied(),
            Source::Video(l) => l.get(pos).map(|v| v.creative),
            Source::Native(l) => l.get(pos).map(|n| n.0),
        }
    }
}

/// A video imp's player, checked against video creatives: which of the catalog's few
/// MIME types it takes is worked out once (index 0: unknown, allowed).
struct VideoFit {
    lo: u32,
    hi: u32,
    mime_ok: [bool; 8],
}

impl VideoFit {
    fn new(sel: &Selector, video: &crate::openrtb::Video<'_>) -> VideoFit {
        let mut mime_ok = [true; 8];
        if !video.mimes.is_empty() {
            for (k, m) in sel.video_mimes.iter().enumerate().take(mime_ok.len()).skip(1) {
                mime_ok[k] = video.mimes.iter().any(|v| v.eq_ignore_ascii_case(m));
            }
        }
        VideoFit { lo: video.minduration.unwrap_or(0), hi: video.maxduration.unwrap_or(u32::MAX), mime_ok }
    }

    fn fits(&self, sel: &Selector, video: &crate::openrtb::Video<'_>, v: &VideoEntry) -> bool {
        let mime = usize::from(v.mime);
        let mime_ok = match self.mime_ok.get(mime) {
            Some(&ok) => ok,
            None => video.mimes.iter().any(|m| m.eq_ignore_ascii_case(&sel.video_mimes[mime])),
        };
        let protocol_ok = video.protocols.is_empty() || v.protocol == 0 || video.protocols.contains(&v.protocol);
        (self.lo..=self.hi).contains(&v.duration) && mime_ok && protocol_ok
    }
}

/// One imp's selection: what every creative is checked against once its format fits.
struct Scan<'s, 'r> {
    selector: &'s Selector,
    req: &'s BidRequest<'r>,
    imp_index: u16,
    terms: &'s ImpTerms,
    deals: &'s [crate::openrtb::Deal<'r>],
    reach: RequestReach<'s>,
    secure_only: bool,
    open_floor: f64,
    limits: Limits<'s>,
    /// `out.len()` before this imp: its candidates are the ones after.
    start: usize,
    cpa_dropped: bool,
}

impl<'s, 'r> Scan<'s, 'r> {
    /// `None` when nothing can bid on the imp at all (a private auction without a deal
    /// open to us).
    fn new(
        selector: &'s Selector,
        req: &'s BidRequest<'r>,
        imp_index: u16,
        imp: &'s Imp<'r>,
        terms: &'s ImpTerms,
        limits: Limits<'s>,
        start: usize,
    ) -> Option<Scan<'s, 'r>> {
        if terms.private && terms.deals.is_empty() {
            return None; // only deals may win, and none is open to us
        }
        Some(Scan {
            selector,
            req,
            imp_index,
            terms,
            deals: imp.pmp.as_ref().map(|p| p.deals.as_slice()).unwrap_or_default(),
            reach: selector.vocabulary.request(req.country(), req.device_type(), req.os()),
            secure_only: imp.secure == Some(true),
            open_floor: terms.floor_usd.unwrap_or(f64::INFINITY),
            limits,
            start,
            cpa_dropped: false,
        })
    }

    fn full(&self, out: &Candidates) -> bool {
        out.len() - self.start >= self.limits.per_imp
    }

    /// Without deals, a creative whose campaign cannot pay the open floor: neither can
    /// any creative ranked after it.
    fn below_every_floor(&self, creative: u32) -> bool {
        let sel = self.selector;
        self.terms.deals.is_empty()
            && sel.catalog.campaigns[sel.campaign_of[creative as usize] as usize].max_cpm < self.open_floor
    }

    fn selected(&self) -> Selected {
        Selected { cpa_dropped: self.cpa_dropped }
    }

    /// Appends `creative` (whose format fits the imp) when every other rule lets it bid.
    /// Callers have already stopped at [`Scan::below_every_floor`], so without deals the
    /// campaign reaches the open floor here.
    fn consider(&mut self, creative: u32, battr: &[u16], out: &mut Candidates) {
        let sel = self.selector;
        let terms = self.terms;
        let ci = sel.campaign_of[creative as usize] as usize;
        let campaign = &sel.catalog.campaigns[ci];
        let t = sel.traits[creative as usize];
        if (sel.any_exhausted.load(Ordering::Relaxed) && sel.exhausted[ci].load(Ordering::Relaxed))
            || (self.secure_only && !t.secure)
            || (t.has_attr && sel.catalog.creatives[creative as usize].attr.iter().any(|a| battr.contains(a)))
            || !sel.targeting[ci].matches(&self.reach)
            || blocked(self.req, campaign)
        {
            return;
        }
        // The first open deal this campaign buys through, else the open auction.
        let deal = terms.deals.iter().find(|(d, _)| {
            let deal = &self.deals[usize::from(*d)];
            let id = deal.id.as_deref().unwrap_or_default();
            campaign.deals.iter().any(|c| c == id)
                && (deal.wadomain.is_empty() || deal.wadomain.iter().any(|d| d.eq_ignore_ascii_case(&campaign.adomain)))
        });
        let (deal, floor) = match deal {
            Some(&(d, floor)) => (Some(d), floor),
            None if terms.private => return,
            None => (None, self.open_floor),
        };
        if campaign.max_cpm < floor {
            return;
        }
        if !self.limits.pcvr && campaign.goal().needs_pcvr() {
            self.cpa_dropped = true;
            return;
        }
        if !self.limits.admit.admits(ci as u32, creative) {
            return;
        }
        out.push(Candidate { imp: self.imp_index, creative, deal });
    }
}

/// True when the request blocks the campaign's category, domain or app.
pub fn blocked(req: &BidRequest<'_>, campaign: &Campaign) -> bool {
    let category_blocked = req.bcat.iter().any(|b| {
        let cat = campaign.category.as_str();
        cat == b.as_ref() || (cat.len() > b.len() && cat.starts_with(b.as_ref()) && cat.as_bytes()[b.len()] == b'-')
    });
    let app_blocked = campaign.bundle.as_deref().is_some_and(|b| req.bapp.iter().any(|a| a == b));
    category_blocked || app_blocked || req.badv.iter().any(|d| d.eq_ignore_ascii_case(&campaign.adomain))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{fixtures, Targeting};
    use crate::features::FeatureSpec;
    use std::path::Path;

    fn selector() -> Selector {
        selector_of(fixture_catalog())
    }

    fn selector_of(catalog: Catalog) -> Selector {
        catalog.check().unwrap();
        let spec =
            FeatureSpec::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models/feature_spec.json"))).unwrap();
        Selector::new(catalog, &Extractor::new(spec))
    }

    fn fixture_catalog() -> Catalog {
        let camp = |id: &str, cat: &str, countries: &[&str], max_cpm: f64| Campaign {
            max_cpm,
            targeting: Targeting {
                countries: countries.iter().map(|c| c.to_string()).collect(),
                ..Targeting::default()
            },
            deals: if id == "a" { vec!["d-a".into()] } else { Vec::new() },
            bundle: (id == "c").then(|| "com.c.app".into()),
            ..fixtures::campaign(id, cat)
        };
        let cr = |id: &str, cmp: &str, format: Format| Creative {
            attr: if id == "c300" { vec![6] } else { Vec::new() },
            banner_type: (id == "b300").then_some(3),
            mime: matches!(format, Format::Video { .. }).then(|| "video/mp4".into()),
            protocol: matches!(format, Format::Video { .. }).then_some(if id == "av15" { 7 } else { 3 }),
            native: matches!(format, Format::Native).then(|| crate::catalog::NativeAssets {
                title: "t".into(),
                image: crate::catalog::NativeImage { url: "https://x/i.jpg".into(), w: 1200, h: 627 },
                icon: None,
                sponsored: "b".into(),
                description: None,
                cta: None,
                click_url: "https://x/c".into(),
            }),
            ..fixtures::creative(id, cmp, format)
        };
        Catalog {
            version: 1,
            campaigns: vec![
                camp("a", "IAB2-3", &[], 10.0),
                camp("b", "IAB7", &["USA"], 10.0),
                camp("c", "IAB9", &[], 1.0),
            ],
            creatives: vec![
                cr("a300", "a", Format::Banner { w: 300, h: 250 }),
                cr("b300", "b", Format::Banner { w: 300, h: 250 }),
                cr("c300", "c", Format::Banner { w: 300, h: 250 }),
                cr("a728", "a", Format::Banner { w: 728, h: 90 }),
                cr("av15", "a", Format::Video { w: 640, h: 480, duration: 15 }),
                cr("av30", "a", Format::Video { w: 640, h: 480, duration: 30 }),
                cr("bn", "b", Format::Native),
            ],
        }
    }

    fn check(body: &str, expected: &[&str]) {
        check_with(&selector(), body, expected)
    }

    fn check_with(s: &Selector, body: &str, expected: &[&str]) {
        let mut buf = body.as_bytes().to_vec();
        let req = crate::openrtb::parse(&mut buf).unwrap();
        let (mut out, mut linear) = (Vec::new(), Vec::new());
        let rates = Rates::new(&Default::default()).unwrap();
        for (i, imp) in req.imp.iter().enumerate() {
            s.select_imp(&req, i as u16, imp, &ImpTerms::of(imp, "ctrbid", &rates), Limits::ALL, &mut out);
            s.select_imp_linear(&req, i as u16, imp, &ImpTerms::of(imp, "ctrbid", &rates), Limits::ALL, &mut linear);
        }
        assert_eq!(sorted(&out), sorted(&linear), "indexed and linear selection differ on {body}");
        let got: Vec<String> = out
            .iter()
            .map(|c| match c.deal {
                Some(d) => format!("{}@{d}", s.creative(c.creative).id),
                None => s.creative(c.creative).id.clone(),
            })
            .collect();
        assert_eq!(got, expected, "{body}");
    }

    fn sorted(c: &[Candidate]) -> Vec<(u16, u32, Option<u8>)> {
        let mut v: Vec<_> = c.iter().map(|c| (c.imp, c.creative, c.deal)).collect();
        v.sort_unstable();
        v
    }

    /// The merged index lists find what a rank-order scan of the whole catalog finds, in
    /// the same order, with and without a cap, on every Prebid sample and the default
    /// catalog; with a cap, the highest `max_cpm` candidates are the ones kept.
    #[test]
    fn indexed_selection_equals_the_linear_scan() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let spec = FeatureSpec::load(&root.join("models/feature_spec.json")).unwrap();
        let s = Selector::new(Catalog::load(&root.join("models/default/catalog.json")).unwrap(), &Extractor::new(spec));
        let rates = Rates::new(&Default::default()).unwrap();
        let (mut requests, mut selected, mut capped) = (0, 0, 0);
        for entry in std::fs::read_dir(root.join("tests/fixtures/openrtb/prebid")).unwrap() {
            let mut body = std::fs::read(entry.unwrap().path()).unwrap();
            let Ok(req) = crate::openrtb::parse(&mut body) else { continue };
            for limits in [Limits::ALL, Limits { per_imp: 7, pcvr: false, ..Limits::ALL }] {
                let (mut out, mut linear) = (Vec::new(), Vec::new());
                for (i, imp) in req.imp.iter().enumerate() {
                    let terms = ImpTerms::of(imp, "ctrbid", &rates);
                    let (before, all) = (out.len(), s.select_imp(&req, i as u16, imp, &terms, limits, &mut out));
                    assert_eq!(all, s.select_imp_linear(&req, i as u16, imp, &terms, limits, &mut linear));
                    let imp_out = &out[before..];
                    assert!(imp_out.len() <= limits.per_imp);
                    let cpm = |c: &Candidate| s.campaign_of(c.creative).max_cpm;
                    assert!(imp_out.windows(2).all(|w| cpm(&w[0]) >= cpm(&w[1])), "rank order");
                    if !limits.pcvr {
                        assert!(imp_out.iter().all(|c| !s.campaign_of(c.creative).goal().needs_pcvr()));
                    }
                    capped += usize::from(limits.per_imp == 7 && imp_out.len() == 7);
                }
                assert_eq!(out, linear, "request {:?}", req.id);
                requests += 1;
                selected += out.len();
            }
        }
        assert!(
            requests > 800 && selected > 1000 && capped > 100,
            "{requests} {selected} {capped}: the corpus must select"
        );
    }

    /// The same on a generated catalog of 5,000 campaigns (97 % naming countries, split
    /// into per-country lists) and the simulator's traffic for it, with and without a cap.
    #[test]
    fn country_split_lists_select_what_the_linear_scan_selects() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let spec = FeatureSpec::load(&root.join("models/feature_spec.json")).unwrap();
        let cfg = crate::simulate::SimConfig {
            seed: 7,
            campaigns: 5_000,
            creatives: 15_000,
            impressions: 1_500,
            ..Default::default()
        };
        let s = Selector::new(crate::simulate::generate_catalog(&cfg).unwrap(), &Extractor::new(spec));
        assert!(s.by_size.values().any(|l| l.shards.len() > 1), "the lists are split by country");
        let dir = tempfile::tempdir().unwrap();
        crate::simulate::simulate(
            &crate::simulate::SimConfig { seed: 7, impressions: 1_500, ..Default::default() },
            dir.path(),
        )
        .unwrap();
        let rates = Rates::new(&Default::default()).unwrap();
        let (mut requests, mut selected) = (0, 0);
        for line in std::fs::read_to_string(dir.path().join("requests.jsonl")).unwrap().lines() {
            let mut body = line.as_bytes().to_vec();
            let req = crate::openrtb::parse(&mut body).unwrap();
            for limits in [Limits::ALL, Limits { per_imp: 20, pcvr: true, ..Limits::ALL }] {
                let (mut out, mut linear) = (Vec::new(), Vec::new());
                for (i, imp) in req.imp.iter().enumerate() {
                    let terms = ImpTerms::of(imp, "ctrbid", &rates);
                    s.select_imp(&req, i as u16, imp, &terms, limits, &mut out);
                    s.select_imp_linear(&req, i as u16, imp, &terms, limits, &mut linear);
                }
                assert_eq!(out, linear, "request {:?}", req.id);
                requests += 1;
                selected += out.len();
            }
        }
        assert!(requests > 1_000 && selected > 50 * requests, "{requests} requests, {selected} candidates");
    }

    /// A list splits only while campaigns naming no country (in every part) keep it small.
    #[test]
    fn lists_split_by_country_unless_that_multiplies_them() {
        let named: Vec<Option<Vec<usize>>> = vec![Some(vec![1]), Some(vec![2, 3]), None];
        let split = Shards::split(vec![0u32, 1, 2], 4, |&c| named[c as usize].as_deref());
        assert_eq!(split.shards, vec![vec![2], vec![0, 2], vec![1, 2], vec![1, 2]]);
        assert_eq!((split.get(0), split.get(3)), (&[2][..], &[1, 2][..]));
        let untargeted: Vec<Option<Vec<usize>>> = vec![None; 3];
        let one = Shards::split(vec![0u32, 1, 2], 10, |&c| untargeted[c as usize].as_deref());
        assert_eq!((one.shards.len(), one.get(7)), (1, &[0, 1, 2][..]));
    }

    #[test]
    fn selection_rules() {
        let usa = r#""device":{"geo":{"country":"USA"}}"#;
        check(&format!(r#"{{"imp":[{{"banner":{{"w":300,"h":250}}}}],{usa}}}"#), &["a300", "b300", "c300"]);
        check(r#"{"imp":[{"banner":{"w":300,"h":250}}]}"#, &["a300", "c300"]);
        check(&format!(r#"{{"imp":[{{"banner":{{"w":300,"h":250}},"bidfloor":2}}],{usa}}}"#), &["a300", "b300"]);
        check(
            r#"{"imp":[{"banner":{"format":[{"w":728,"h":90},{"w":300,"h":250},{"w":728,"h":90}]}}]}"#,
            &["a300", "a728", "c300"], // rank order: max_cpm, then catalog order
        );
        check(r#"{"imp":[{"banner":{"w":300,"h":250}}],"bcat":["IAB2"]}"#, &["c300"]);
        check(r#"{"imp":[{"banner":{"w":300,"h":250}}],"bcat":["IAB2-3"],"badv":["C.example"]}"#, &[]);
        check(r#"{"imp":[{"banner":{"w":300,"h":250}}],"bcat":["IAB2-31","IAB"]}"#, &["a300", "c300"]);
        check(r#"{"imp":[{"video":{"minduration":5,"maxduration":20}}]}"#, &["av15"]);
        let native = r#"{"native":{"request":"{\"assets\":[{\"id\":1,\"required\":1,\"title\":{\"len\":20}}]}"}}"#;
        check(&format!(r#"{{"imp":[{{"video":{{}}}},{native}]}}"#), &["av15", "av30"]);
        check(&format!(r#"{{"imp":[{native}],{usa}}}"#), &["bn"]);
        // A native imp without a readable request, or asking for what the creative lacks.
        check(&format!(r#"{{"imp":[{{"native":{{}}}}],{usa}}}"#), &[]);
        check(
            &format!(
                r#"{{"imp":[{{"native":{{"request":"{{\"assets\":[{{\"id\":1,\"required\":1,\"data\":{{\"type\":12}}}}]}}"}}}}],{usa}}}"#
            ),
            &[],
        );
    }

    #[test]
    fn creative_rules_of_real_requests() {
        let usa = r#""device":{"geo":{"country":"USA"}}"#;
        // btype 3 blocks b300's JavaScript banner; battr 6 blocks c300.
        check(&format!(r#"{{"imp":[{{"banner":{{"w":300,"h":250,"btype":[3],"battr":[6]}}}}],{usa}}}"#), &["a300"]);
        // Video MIME types and protocols: av15 is VAST 4 (7), av30 VAST 3 (3).
        check(r#"{"imp":[{"video":{"mimes":["video/mp4"],"protocols":[2,3]}}]}"#, &["av30"]);
        check(r#"{"imp":[{"video":{"mimes":["video/webm"]}}]}"#, &[]);
        // bapp blocks campaign c's app.
        check(r#"{"imp":[{"banner":{"w":300,"h":250}}],"bapp":["com.c.app"]}"#, &["a300"]);
    }

    #[test]
    fn secure_imps_leave_out_markup_with_plain_http() {
        let mut catalog = fixture_catalog();
        let by_id = |c: &Catalog, id: &str| c.creatives.iter().position(|c| c.id == id).unwrap();
        let a300 = by_id(&catalog, "a300");
        catalog.creatives[a300].adm = r#"<a href="https://a.example/l"><img src="http://a.example/i.png"></a>"#.into();
        let b300 = by_id(&catalog, "b300");
        catalog.creatives[b300].adm = r#"<a href="https://b.example/l"><img src="https://b.example/i.png"></a>"#.into();
        let c300 = by_id(&catalog, "c300");
        catalog.creatives[c300].adm = r#"<IMG SRC="HTTP://c.example/i.png">"#.into();
        let bn = by_id(&catalog, "bn");
        catalog.creatives[bn].native.as_mut().unwrap().image.url = "http://b.example/n.jpg".into();
        let s = selector_of(catalog);
        let usa = r#""device":{"geo":{"country":"USA"}}"#;
        let banner = |secure: &str| format!(r#"{{"imp":[{{"banner":{{"w":300,"h":250}}{secure}}}],{usa}}}"#);
        // Without `secure` (or with 0) every creative may serve, whatever its URLs.
        check_with(&s, &banner(""), &["a300", "b300", "c300"]);
        check_with(&s, &banner(r#","secure":0"#), &["a300", "b300", "c300"]);
        // With secure = 1, markup with a plain-HTTP URL (in any case) is left out.
        check_with(&s, &banner(r#","secure":1"#), &["b300"]);
        let native = |secure: &str| {
            let request = r#"{\"assets\":[{\"id\":1,\"required\":1,\"title\":{\"len\":20}}]}"#;
            format!(r#"{{"imp":[{{"native":{{"request":"{request}"}}{secure}}}],{usa}}}"#)
        };
        check_with(&s, &native(""), &["bn"]);
        // A native creative's image, icon and click URLs count as its markup.
        check_with(&s, &native(r#","secure":1"#), &[]);
    }

    #[test]
    fn deals_and_private_auctions() {
        // Campaign a buys deal d-a: its creatives bid through it, the others in the open auction.
        let pmp = |private: u8, floor: f64, wseat: &str| {
            format!(
                r#"{{"imp":[{{"banner":{{"w":300,"h":250}},"bidfloor":0.1,"pmp":{{"private_auction":{private},"deals":[{{"id":"other"}},{{"id":"d-a","bidfloor":{floor},"wseat":[{wseat}]}}]}}}}]}}"#
            )
        };
        check(&pmp(0, 5.0, ""), &["a300@1", "c300"]);
        check(&pmp(1, 5.0, ""), &["a300@1"]);
        // Deal floor over the imp's: 20 is beyond a's max_cpm (10).
        check(&pmp(1, 20.0, ""), &[]);
        // A deal for other seats is not ours.
        check(&pmp(1, 5.0, r#""someone-else""#), &[]);
        check(&pmp(1, 5.0, r#""ctrbid""#), &["a300@1"]);
        // private_auction sent as a string.
        check(r#"{"imp":[{"banner":{"w":300,"h":250},"pmp":{"private_auction":"1","deals":[{"id":"zz"}]}}]}"#, &[]);
    }
}
