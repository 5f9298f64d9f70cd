//! Attribute macros standing in for `metriken::metric` and
//! `linkme::distributed_slice`, written against `proc_macro` alone (no syn,
//! no quote: nothing from a registry).
//!
//! Both accept exactly the syntax Rezolus uses, refuse anything else with a
//! `compile_error!`, emit the item unchanged, and add a type assertion that
//! references the static, so rustc still checks what the real macros check:
//!
//! * `#[metric(name = "...", description = "...", metadata = { k = "v", ... })]`
//!   on a `static`: the static's type must implement `metriken::Metric`.
//! * `#[distributed_slice]` on `static NAME: [T] = [..];`: the declaration
//!   becomes a `linkme::DistributedSlice<[T]>`.
//! * `#[distributed_slice(PATH)]` on `static NAME: U = ...;`: `U` must be
//!   exactly the element type `T` of the slice at `PATH`.

use proc_macro::{Delimiter, Group, Ident, Literal, Punct, Spacing, Span, TokenStream, TokenTree};

/// Fail with `msg` at `span`.
fn error(msg: &str, span: Span) -> TokenStream {
    let mut out: TokenStream = "::core::compile_error!".parse().unwrap();
    let mut lit = Literal::string(msg);
    lit.set_span(span);
    let mut group = Group::new(Delimiter::Parenthesis, TokenTree::Literal(lit).into());
    group.set_span(span);
    out.extend([
        TokenTree::Group(group),
        TokenTree::Punct(Punct::new(';', Spacing::Alone)),
    ]);
    out
}

fn is_punct(tt: &TokenTree, ch: char) -> bool {
    matches!(tt, TokenTree::Punct(p) if p.as_char() == ch)
}

fn is_ident(tt: &TokenTree, name: &str) -> bool {
    matches!(tt, TokenTree::Ident(i) if i.to_string() == name)
}

/// A string literal (`"..."` or a raw string), not a byte string or number.
fn is_str_lit(tt: &TokenTree) -> bool {
    match tt {
        TokenTree::Literal(l) => {
            let s = l.to_string();
            s.starts_with('"') || s.starts_with("r\"") || s.starts_with("r#")
        }
        _ => false,
    }
}

/// Split `tokens` on top-level commas; a trailing comma is allowed, an empty
/// entry (`a,,b`) is not.
fn split_commas(tokens: Vec<TokenTree>) -> Result<Vec<Vec<TokenTree>>, (String, Span)> {
    let mut parts = vec![Vec::new()];
    for tt in tokens {
        if is_punct(&tt, ',') {
            if parts.last().unwrap().is_empty() {
                return Err(("unexpected `,`".into(), tt.span()));
            }
            parts.push(Vec::new());
        } else {
            parts.last_mut().unwrap().push(tt);
        }
    }
    if parts.last().unwrap().is_empty() {
        parts.pop();
    }
    Ok(parts)
}

/// `key = <value tokens>` split into the key ident and the value.
fn key_value(part: Vec<TokenTree>) -> Result<(Ident, Vec<TokenTree>), (String, Span)> {
    let span = part[0].span();
    let mut it = part.into_iter();
    let key = match it.next() {
        Some(TokenTree::Ident(i)) => i,
        _ => return Err(("expected `key = value`".into(), span)),
    };
    match it.next() {
        Some(tt) if is_punct(&tt, '=') => {}
        _ => return Err((format!("expected `=` after `{key}`"), key.span())),
    }
    let value: Vec<TokenTree> = it.collect();
    if value.is_empty() {
        return Err((format!("`{key}` has no value"), key.span()));
    }
    Ok((key, value))
}

/// The parts of `[attrs] [vis] static NAME: TYPE = EXPR;` the macros need.
struct StaticItem {
    /// Everything before `static` (outer attributes, visibility).
    head: Vec<TokenTree>,
    name: Ident,
    ty: Vec<TokenTree>,
    init: Vec<TokenTree>,
}

fn parse_static(item: TokenStream, what: &str) -> Result<StaticItem, (String, Span)> {
    let tokens: Vec<TokenTree> = item.into_iter().collect();
    let first = tokens
        .first()
        .map(|t| t.span())
        .unwrap_or_else(Span::call_site);
    let pos = tokens
        .iter()
        .position(|t| is_ident(t, "static"))
        .ok_or_else(|| (format!("{what} applies to a `static` item only"), first))?;
    let head = tokens[..pos].to_vec();
    let mut rest = tokens[pos + 1..].iter().cloned().peekable();
    if rest.peek().is_some_and(|t| is_ident(t, "mut")) {
        return Err((
            format!("{what} does not accept `static mut`"),
            tokens[pos].span(),
        ));
    }
    let name = match rest.next() {
        Some(TokenTree::Ident(i)) => i,
        other => {
            let span = other.map(|t| t.span()).unwrap_or(first);
            return Err(("expected the static's name".into(), span));
        }
    };
    match rest.next() {
        Some(tt) if is_punct(&tt, ':') => {}
        _ => {
            return Err((
                format!("expected `:` and a type after `{name}`"),
                name.span(),
            ))
        }
    }
    // The type runs to the first `=` outside `<...>` (`Foo<Item = T>`).
    let mut ty = Vec::new();
    let mut depth = 0i32;
    let mut saw_eq = false;
    for tt in rest.by_ref() {
        if depth == 0 && is_punct(&tt, '=') {
            saw_eq = true;
            break;
        }
        if is_punct(&tt, '<') {
            depth += 1;
        } else if is_punct(&tt, '>') {
            depth -= 1;
        }
        ty.push(tt);
    }
    if !saw_eq || ty.is_empty() {
        return Err((format!("expected `{name}: <type> = <value>;`"), name.span()));
    }
    let mut init: Vec<TokenTree> = rest.collect();
    match init.pop() {
        Some(tt) if is_punct(&tt, ';') && !init.is_empty() => {}
        _ => return Err((format!("expected `= <value>;` for `{name}`"), name.span())),
    }
    Ok(StaticItem {
        head,
        name,
        ty,
        init,
    })
}

fn stream(tokens: &[TokenTree]) -> TokenStream {
    tokens.iter().cloned().collect()
}

fn finish(result: Result<TokenStream, (String, Span)>) -> TokenStream {
    result.unwrap_or_else(|(msg, span)| error(&msg, span))
}

/// `metriken::metric`: `name = "<lit>"` and `description = "<lit>"` are
/// required (in any order), `metadata = { key = "<lit>", ... }` is optional
/// (identifier keys, string-literal values, each key once); `formatter = <expr>`
/// and `crate = <path>` are accepted as metriken does. Nothing else is.
#[proc_macro_attribute]
pub fn metric(attr: TokenStream, item: TokenStream) -> TokenStream {
    finish(metric_impl(attr, item))
}

fn metric_impl(attr: TokenStream, item: TokenStream) -> Result<TokenStream, (String, Span)> {
    let mut seen: Vec<String> = Vec::new();
    for part in split_commas(attr.into_iter().collect())? {
        let (key, value) = key_value(part)?;
        let k = key.to_string();
        if seen.contains(&k) {
            return Err((format!("duplicate `{k}` in #[metric]"), key.span()));
        }
        match k.as_str() {
            "name" | "description" => {
                if value.len() != 1 || !is_str_lit(&value[0]) {
                    return Err((format!("`{k}` must be a string literal"), value[0].span()));
                }
            }
            "metadata" => match &value[..] {
                [TokenTree::Group(g)] if g.delimiter() == Delimiter::Brace => {
                    let mut keys: Vec<String> = Vec::new();
                    for entry in split_commas(g.stream().into_iter().collect())? {
                        let (mk, mv) = key_value(entry)?;
                        if mv.len() != 1 || !is_str_lit(&mv[0]) {
                            return Err((
                                format!("metadata `{mk}` must be a string literal"),
                                mv[0].span(),
                            ));
                        }
                        if keys.contains(&mk.to_string()) {
                            return Err((format!("duplicate metadata key `{mk}`"), mk.span()));
                        }
                        keys.push(mk.to_string());
                    }
                }
                _ => {
                    return Err((
                        "`metadata` must be a `{ key = \"value\", ... }` block".into(),
                        value[0].span(),
                    ))
                }
            },
            "formatter" | "crate" => {}
            _ => {
                return Err((
                    format!(
                        "unknown #[metric] argument `{k}` (expected name, description, metadata, formatter or crate)"
                    ),
                    key.span(),
                ))
            }
        }
        seen.push(k);
    }
    for required in ["name", "description"] {
        if !seen.iter().any(|k| k == required) {
            return Err((
                format!("#[metric] requires `{required} = \"...\"`"),
                Span::call_site(),
            ));
        }
    }
    let original = item.clone();
    let parsed = parse_static(item, "#[metric]")?;
    let mut out = original;
    // Referencing the static (as metriken's registration does) keeps it live
    // for the dead-code lint and requires its type to implement `Metric`.
    let check = format!(
        "const _: fn() = || {{ ::metriken::__private::assert_metric(&{}); }};",
        parsed.name
    );
    out.extend(check.parse::<TokenStream>().unwrap());
    Ok(out)
}

/// `linkme::distributed_slice`: bare on the slice declaration
/// `static NAME: [T] = [..];`, or `(PATH)` on an element `static E: T = ...;`.
#[proc_macro_attribute]
pub fn distributed_slice(attr: TokenStream, item: TokenStream) -> TokenStream {
    finish(distributed_slice_impl(attr, item))
}

fn distributed_slice_impl(
    attr: TokenStream,
    item: TokenStream,
) -> Result<TokenStream, (String, Span)> {
    let path: Vec<TokenTree> = attr.into_iter().collect();
    if path.is_empty() {
        return declaration(item);
    }
    // A path: idents separated by `::`, optionally leading `::`.
    let mut expect_ident = true;
    let mut i = 0;
    if path.len() >= 2 && is_punct(&path[0], ':') && is_punct(&path[1], ':') {
        i = 2;
    }
    while i < path.len() {
        if expect_ident {
            if !matches!(path[i], TokenTree::Ident(_)) {
                return Err((
                    "#[distributed_slice(..)] takes the path of a slice".into(),
                    path[i].span(),
                ));
            }
            i += 1;
        } else {
            if !(i + 1 < path.len() && is_punct(&path[i], ':') && is_punct(&path[i + 1], ':')) {
                return Err((
                    "#[distributed_slice(..)] takes the path of a slice".into(),
                    path[i].span(),
                ));
            }
            i += 2;
        }
        expect_ident = !expect_ident;
    }
    if expect_ident {
        return Err((
            "#[distributed_slice(..)] path ends in `::`".into(),
            path[path.len() - 1].span(),
        ));
    }
    let original = item.clone();
    let parsed = parse_static(item, "#[distributed_slice(..)]")?;
    let mut out = original;
    // The element's declared type must be exactly the slice's element type.
    let check = format!(
        "const _: fn() = || {{ ::linkme::__private::typecheck::<{}>({}, &{}); }};",
        stream(&parsed.ty),
        stream(&path),
        parsed.name
    );
    out.extend(check.parse::<TokenStream>().unwrap());
    Ok(out)
}

fn declaration(item: TokenStream) -> Result<TokenStream, (String, Span)> {
    let parsed = parse_static(item, "#[distributed_slice]")?;
    let elem = match &parsed.ty[..] {
        [TokenTree::Group(g)] if g.delimiter() == Delimiter::Bracket => g.stream(),
        _ => {
            return Err((
                "#[distributed_slice] declares `static NAME: [T] = [..];`".into(),
                parsed.name.span(),
            ))
        }
    };
    let init_ok = match &parsed.init[..] {
        [TokenTree::Group(g)] if g.delimiter() == Delimiter::Bracket => {
            g.stream().to_string().replace(' ', "") == ".."
        }
        _ => false,
    };
    if !init_ok {
        return Err((
            "a distributed slice is initialised with `[..]`".into(),
            parsed.name.span(),
        ));
    }
    let mut out = stream(&parsed.head);
    let decl = format!(
        "static {}: ::linkme::DistributedSlice<[{}]> = ::linkme::DistributedSlice::__private_new();",
        parsed.name, elem
    );
    out.extend(decl.parse::<TokenStream>().unwrap());
    Ok(out)
}
