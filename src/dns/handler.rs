//! The general, reference path for every query: TCP queries always come here (`dns::tcp`), UDP
//! queries when the fast path (`fast::try_answer`) cannot answer them, and every query of the
//! hickory UDP engine (through hickory-server's `Server` and this `RequestHandler`).

use std::iter;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Edns, Header, MessageType, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::Record;
use hickory_server::proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_server::proto::serialize::binary::{BinDecoder, BinEncodable, BinEncoder};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder, Queries};
use tracing::debug;

use crate::dns::answer::{self, AnswerFor, Reply};
use crate::dns::cookie;
use crate::dns::ecs::{self, Ecs};
use crate::dns::guard::{CookieCheck, Guard, GuardHandle, Now};
use crate::dns::rrl::{self, Account, Class, Verdict};
use crate::dns::stats::{Proto, QueryKey, rcode_of};
use crate::table::ClientAddr;
use crate::table::{RoutingTable, TableHandle};

/// The request handler registered with hickory-server.
#[derive(Clone)]
pub struct DnsHandler {
    table: TableHandle,
    guard: Arc<GuardHandle>,
}

impl DnsHandler {
    pub fn new(table: TableHandle, guard: Arc<GuardHandle>) -> Self {
        Self { table, guard }
    }
}

/// What to send back for a request.
enum Prepared<'t> {
    /// An error with no records (FORMERR, NOTIMP, BADVERS, REFUSED…).
    Error(ResponseCode),
    /// An error with no records and no question: the question cannot be echoed as received.
    Bare(ResponseCode),
    Reply(Reply<'t>),
}

/// A prepared answer and what the OPT record of the response carries.
struct Prep<'t> {
    prepared: Prepared<'t>,
    /// The query's valid ECS option (echoed with our scope).
    ecs: Option<Ecs>,
    /// The query's COOKIE option, judged (answered with our cookie).
    cookie: CookieCheck,
}

impl<'t> Prep<'t> {
    fn error(code: ResponseCode) -> Self {
        Self {
            prepared: Prepared::Error(code),
            ecs: None,
            cookie: CookieCheck::None,
        }
    }
}

/// Does the single question's name (from byte 12) use a compression pointer? In a query it can
/// only point back into the header (hickory allows only backward pointers), and echoing it
/// verbatim would point into our response's header: FORMERR without a question instead.
fn question_has_pointer(raw: &[u8]) -> bool {
    let mut p = 12;
    while let Some(&l) = raw.get(p) {
        match l {
            0 => return false,
            l if l & 0xc0 == 0xc0 => return true,
            l => p += 1 + l as usize,
        }
    }
    false
}

/// The request's answer, with its ECS and COOKIE options.
fn prepare<'t>(table: &'t RoutingTable, guard: &Guard, request: &Request, now: Now) -> Prep<'t> {
    if request.metadata.op_code != OpCode::Query {
        return Prep::error(ResponseCode::NotImp);
    }
    if let Some(edns) = &request.edns
        && edns.version() > 0
    {
        return Prep::error(ResponseCode::BADVERS);
    }
    // RFC 7871 §7.1.1: a malformed ECS option is a FORMERR.
    let opts = match request.edns {
        Some(_) => match ecs::options_of_message(request.as_slice()) {
            Ok(o) => o,
            Err(reason) => {
                debug!(src = %request.src(), reason, "malformed EDNS option");
                return Prep::error(ResponseCode::FormErr);
            }
        },
        None => Default::default(),
    };
    let cookie = guard.cookie(&opts, request.src().ip(), now);
    if cookie == CookieCheck::Malformed {
        debug!(src = %request.src(), "malformed COOKIE option");
        return Prep::error(ResponseCode::FormErr);
    }
    let queries = request.queries.queries();
    if queries.is_empty() && matches!(cookie, CookieCheck::Ok(_)) {
        // RFC 7873 §5.4: a query for our cookie alone.
        return Prep {
            prepared: Prepared::Error(ResponseCode::NoError),
            ecs: None,
            cookie,
        };
    }
    if queries.len() != 1 {
        return Prep::error(ResponseCode::FormErr);
    }
    if question_has_pointer(request.as_slice()) {
        debug!(src = %request.src(), "compression pointer in the question");
        return Prep {
            prepared: Prepared::Bare(ResponseCode::FormErr),
            ecs: None,
            cookie,
        };
    }
    let ecs = opts.ecs;
    let client = match ecs.and_then(|e| e.location_addr()) {
        Some(ip) => ClientAddr { ip, from_ecs: true },
        None => ClientAddr::resolver(request.src().ip()),
    };
    let q = queries[0].original();
    let mut reply = answer::answer(
        table,
        q.name(),
        q.query_type(),
        q.query_class(),
        AnswerFor::Client(client),
    );
    if !client.from_ecs {
        reply.scope = 0;
    }
    Prep {
        prepared: Prepared::Reply(reply),
        ecs,
        cookie,
    }
}

/// The rate-limiting account of a prepared answer.
fn account(table: &RoutingTable, request: &Request, prepared: &Prepared<'_>) -> Account {
    match prepared {
        Prepared::Reply(r) => match request.queries.queries().first() {
            Some(q) => {
                let q = q.original();
                rrl::account_of(table, r, q.name(), q.query_type())
            }
            None => Account::new(Class::Error, b"", 0),
        },
        _ => Account::new(Class::Error, b"", 0),
    }
}

/// Count a served answer (the general answer logic never counts, so explain does not).
fn count_served(table: &RoutingTable, prep: &Prep<'_>) {
    if let Prepared::Reply(r) = &prep.prepared
        && let Some(si) = r.service
    {
        table.count_answer(si as usize, r.variant);
    }
}

/// The OPT record of our responses: version 0, our maximum UDP payload, the query's DO bit,
/// the ECS option with our scope and the COOKIE option with our server cookie when the query
/// had them.
fn response_edns(request: &Request, table: &RoutingTable, prep: &Prep<'_>) -> Option<Edns> {
    request.edns.as_ref().map(|q| {
        let mut e = Edns::new();
        e.set_max_payload(table.settings.max_udp_payload);
        e.set_version(0);
        // RFC 3225 §3: the DO bit of the query is copied into the response.
        e.set_dnssec_ok(q.flags().dnssec_ok);
        if let Some(ecs) = prep.ecs {
            let scope = match &prep.prepared {
                Prepared::Reply(r) => r.scope,
                Prepared::Error(_) | Prepared::Bare(_) => 0,
            };
            e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
                ecs.addr,
                ecs.source_prefix,
                scope,
            )));
        }
        if let CookieCheck::Ok(o) = prep.cookie {
            e.options_mut()
                .insert(EdnsOption::Unknown(cookie::OPTION_CODE, o.reply.to_vec()));
        }
        e
    })
}

/// Largest UDP response for this request (RFC 1035 512, or the advertised EDNS size clamped to
/// our configured maximum).
fn udp_limit(request: &Request, table: &RoutingTable) -> u16 {
    match &request.edns {
        Some(e) => e.max_payload().clamp(512, table.settings.max_udp_payload),
        None => 512,
    }
}

type Response<'q, 'a> = MessageResponse<
    'q,
    'a,
    Box<dyn Iterator<Item = &'a Record> + Send + 'a>,
    Box<dyn Iterator<Item = &'a Record> + Send + 'a>,
    Box<dyn Iterator<Item = &'a Record> + Send + 'a>,
    Box<dyn Iterator<Item = &'a Record> + Send + 'a>,
>;

/// Build the hickory response; `truncated` drops every record and sets TC (the client retries
/// over TCP and gets everything).
fn build<'q, 'a>(
    request: &'q Request,
    prepared: &'a Prepared<'a>,
    edns: Option<&'q Edns>,
    truncated: bool,
) -> Response<'q, 'a> {
    let builder = match prepared {
        Prepared::Bare(_) => MessageResponseBuilder::new(&NO_QUESTION, edns),
        _ => MessageResponseBuilder::new(&request.queries, edns),
    };
    let mut metadata = Metadata::response_from_request(&request.metadata);
    if metadata.op_code != OpCode::Query {
        // RD and CD are QUERY's flags (RFC 1035 §4.1.1, RFC 4035 §3.2.2).
        metadata.recursion_desired = false;
        metadata.checking_disabled = false;
    }
    let empty = || -> Box<dyn Iterator<Item = &'a Record> + Send + 'a> { Box::new(iter::empty()) };
    match prepared {
        Prepared::Error(code) | Prepared::Bare(code) => {
            metadata.response_code = *code;
            metadata.truncation = truncated;
            builder.build(metadata, empty(), empty(), empty(), empty())
        }
        Prepared::Reply(r) => {
            metadata.response_code = r.rcode;
            metadata.authoritative = r.authoritative;
            if truncated {
                metadata.truncation = true;
                return builder.build(metadata, empty(), empty(), empty(), empty());
            }
            builder.build(
                metadata,
                boxed(r.answers.iter().copied()),
                boxed(r.authority.iter().copied()),
                empty(),
                boxed(r.additional.iter().copied()),
            )
        }
    }
}

/// An empty question section (hickory builds one only by reading zero questions).
static NO_QUESTION: std::sync::LazyLock<Queries> = std::sync::LazyLock::new(|| {
    Queries::read(&mut BinDecoder::new(&[]), 0).expect("reading no question cannot fail")
});

fn boxed<'a>(
    it: impl Iterator<Item = &'a Record> + Send + 'a,
) -> Box<dyn Iterator<Item = &'a Record> + Send + 'a> {
    Box::new(it)
}

fn encode(response: Response<'_, '_>, max: u16) -> Option<(Vec<u8>, bool)> {
    let mut buf = Vec::with_capacity(512);
    let mut enc = BinEncoder::new(&mut buf);
    enc.set_max_size(max);
    let info = response.destructive_emit(&mut enc).ok()?;
    Some((buf, info.truncation))
}

/// The query-metrics key of a prepared answer.
fn stats_key(table: &RoutingTable, prepared: &Prepared<'_>, proto: Proto, ecs: bool) -> QueryKey {
    match prepared {
        Prepared::Error(code) | Prepared::Bare(code) => {
            QueryKey::new(0, 0, rcode_of(*code), proto, ecs)
        }
        Prepared::Reply(r) => r.stats_key(table, proto, ecs),
    }
}

/// Apply response rate limiting to a prepared UDP answer: `None` = drop it, else whether to
/// send it truncated (a slip). A slip to a client that sent a cookie is a BADCOOKIE answer with
/// our cookie instead (RFC 7873 §5.2.3), so that it retries with the cookie and passes.
fn limit_udp(
    table: &RoutingTable,
    guard: &Guard,
    request: &Request,
    prep: &mut Prep<'_>,
    now: Now,
) -> Option<bool> {
    if guard.rrl.is_none() {
        return Some(false);
    }
    let acct = account(table, request, &prep.prepared);
    match guard.limit(request.src().ip(), &prep.cookie, acct, now) {
        Verdict::Send => Some(false),
        Verdict::Drop => None,
        Verdict::Slip if matches!(prep.cookie, CookieCheck::Ok(_)) => {
            prep.prepared = Prepared::Error(ResponseCode::BADCOOKIE);
            Some(false)
        }
        Verdict::Slip => Some(true),
    }
}

/// Encode the answer to a UDP request within the client's size limit: if the full answer does
/// not fit, an empty answer with TC=1. Also the query's metrics key. `None`: rate-limited.
fn encode_udp(
    request: &Request,
    table: &RoutingTable,
    guard: &Guard,
    now: Now,
) -> Option<(Vec<u8>, QueryKey)> {
    let mut prep = prepare(table, guard, request, now);
    let slip = limit_udp(table, guard, request, &mut prep, now)?;
    if !slip {
        count_served(table, &prep);
    }
    let key = stats_key(table, &prep.prepared, Proto::Udp, prep.ecs.is_some());
    let edns = response_edns(request, table, &prep);
    let limit = udp_limit(request, table);
    if !slip {
        let (bytes, tc) = encode(build(request, &prep.prepared, edns.as_ref(), false), limit)?;
        if !tc {
            return Some((bytes, key));
        }
    }
    encode(build(request, &prep.prepared, edns.as_ref(), true), limit).map(|(b, _)| (b, key))
}

/// A FORMERR response built from a header we could parse (the rest of the packet could not be):
/// same ID and opcode, no sections.
pub fn formerr_from_header(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.len() < 12 || raw[2] & 0x80 != 0 {
        return None;
    }
    let mut out = vec![0u8; 12];
    out[0..2].copy_from_slice(&raw[0..2]);
    // QR=1, opcode copied, RCODE=1 (FORMERR); RD and CD copied for QUERY only, the one
    // opcode that defines them.
    let query = raw[2] & 0x78 == 0;
    out[2] = 0x80 | (raw[2] & 0x78) | if query { raw[2] & 0x01 } else { 0 };
    out[3] = 0x01 | if query { raw[3] & 0x10 } else { 0 };
    Some(out)
}

/// The general path for a UDP packet the fast path did not answer: the response and the
/// query's metrics key. `None` means drop it.
pub fn answer_udp_slow(
    table: &RoutingTable,
    guard: &Guard,
    raw: &[u8],
    src: SocketAddr,
    now: Now,
) -> Option<(Vec<u8>, QueryKey)> {
    match Request::from_bytes(raw.to_vec(), src, Protocol::Udp) {
        Err(e) => {
            debug!(%src, error = %e, "malformed query");
            formerr_from_header(raw).map(|r| (r, QueryKey::formerr(Proto::Udp)))
        }
        Ok(request) => {
            if request.metadata.message_type != MessageType::Query {
                return None;
            }
            encode_udp(&request, table, guard, now)
        }
    }
}

/// The answer to one message received over TCP, and its metrics key; `None`: no answer (a
/// message shorter than a header, or a response: QR=1). Never rate limited, never truncated.
pub fn answer_tcp(
    table: &RoutingTable,
    guard: &Guard,
    raw: Vec<u8>,
    src: SocketAddr,
    now: Now,
) -> Option<(Vec<u8>, QueryKey)> {
    if raw.len() < 12 {
        return None;
    }
    let request = match Request::from_bytes(raw.clone(), src, Protocol::Tcp) {
        Ok(r) => r,
        Err(e) => {
            debug!(%src, error = %e, "malformed query");
            return formerr_from_header(&raw).map(|r| (r, QueryKey::formerr(Proto::Tcp)));
        }
    };
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let prep = prepare(table, guard, &request, now);
    count_served(table, &prep);
    let key = stats_key(table, &prep.prepared, Proto::Tcp, prep.ecs.is_some());
    let edns = response_edns(&request, table, &prep);
    match encode(
        build(&request, &prep.prepared, edns.as_ref(), false),
        u16::MAX,
    ) {
        Some((bytes, _)) => Some((bytes, key)),
        None => {
            // Too large even for TCP: SERVFAIL, as hickory-server answers then.
            let mut m = Metadata::new(request.metadata.id, MessageType::Response, OpCode::Query);
            m.response_code = ResponseCode::ServFail;
            let header = Header {
                metadata: m,
                counts: Default::default(),
            };
            let bytes = header.to_bytes().ok()?;
            Some((
                bytes,
                QueryKey::new(0, 0, rcode_of(ResponseCode::ServFail), Proto::Tcp, false),
            ))
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for DnsHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let start = Instant::now();
        let now = self.guard.now();
        let table = self.table.load();
        let guard = self.guard.load();
        let udp = request.protocol() == Protocol::Udp;
        let mut prep = prepare(&table, &guard, request, now);
        let proto = if udp { Proto::Udp } else { Proto::Tcp };
        let slip = if udp {
            limit_udp(&table, &guard, request, &mut prep, now)
        } else {
            Some(false)
        };
        let Some(slip) = slip else {
            // Rate limited: nothing is sent.
            return ResponseInfo::from(Header {
                metadata: Metadata::response_from_request(&request.metadata),
                counts: Default::default(),
            });
        };
        if !slip {
            count_served(&table, &prep);
        }
        let key = stats_key(&table, &prep.prepared, proto, prep.ecs.is_some());
        let edns = response_edns(request, &table, &prep);
        // hickory truncates UDP answers record by record; we prefer an empty TC=1 answer so the
        // client retries over TCP, so check the size first.
        let truncated = slip
            || udp && {
                let limit = udp_limit(request, &table);
                encode(build(request, &prep.prepared, edns.as_ref(), false), limit)
                    .is_none_or(|(_, tc)| tc)
            };
        let response = build(request, &prep.prepared, edns.as_ref(), truncated);
        let fallback = *response.metadata();
        let sent = response_handle.send_response(response).await;
        table.counters.queries.record(key, start.elapsed());
        match sent {
            Ok(info) => info,
            Err(e) => {
                debug!(error = %e, "failed to send response");
                let mut m = fallback;
                m.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata: m,
                    counts: Default::default(),
                })
            }
        }
    }
}
