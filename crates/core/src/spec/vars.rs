//! `${name}` variables: `[vars]`, `--set name=value` and `for_each` loop
//! variables, interpolated into node fields when the file is loaded.
//!
//! `${in.x}`, `${out.x}` and `${param.x}` are *run-time* placeholders: they
//! survive loading (only in `cmd`) and are filled in when the command runs.
//! `${in.x:list}` and `${in.x:list0}` give an input as a file listing its
//! paths (see [`ListForm`]).
//! `$$` is a literal `$`; a `$` not followed by `{` is left alone, so `$HOME`
//! reaches the shell unchanged.

use std::collections::BTreeMap;

use super::ParamValue;

/// A variable's value: a scalar keeps its TOML type so that
/// `params.epochs = "${epochs}"` stays an integer.
#[derive(Debug, Clone, PartialEq)]
pub enum VarValue {
    Scalar(ParamValue),
    /// Strings and numbers, each keeping its type (`seeds = [0, 1]` loops
    /// give integer params).
    List(Vec<ParamValue>),
}

impl VarValue {
    pub fn describe(&self) -> String {
        match self {
            VarValue::Scalar(v) => v.to_string(),
            VarValue::List(items) => format!("{:?}", items.iter().map(ParamValue::to_plain_string).collect::<Vec<_>>()),
        }
    }
}

pub type Scope = BTreeMap<String, VarValue>;

/// A problem with a `${...}`, and how to fix it.
#[derive(Debug, Clone, PartialEq)]
pub struct VarError {
    pub message: String,
    pub fix: String,
}

fn verr(message: impl Into<String>, fix: impl Into<String>) -> VarError {
    VarError { message: message.into(), fix: fix.into() }
}

/// The run-time placeholder namespaces.
pub const RUNTIME_NAMESPACES: [&str; 3] = ["in", "out", "param"];

/// How `${in.NAME:FORM}` hands an input to a command: as the path of a
/// file that lists the input's paths. A command line is one argument of
/// `sh -c`, which Linux caps at 128 KiB; a list of thousands of store paths
/// does not fit, a file naming them does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListForm {
    /// `:list`: one path per line, each ending in `\n`.
    Lines,
    /// `:list0`: each path ending in a NUL byte (`xargs -0`), for paths
    /// that may hold a newline.
    Nul,
}

impl ListForm {
    fn parse(s: &str) -> Option<ListForm> {
        match s {
            "list" => Some(ListForm::Lines),
            "list0" => Some(ListForm::Nul),
            _ => None,
        }
    }
    /// As written after the `:`.
    pub fn suffix(self) -> &'static str {
        match self {
            ListForm::Lines => "list",
            ListForm::Nul => "list0",
        }
    }
    /// What ends each path in the file.
    pub fn terminator(self) -> u8 {
        match self {
            ListForm::Lines => b'\n',
            ListForm::Nul => 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Piece<'a> {
    Lit(&'a str),
    /// `$$`
    Dollar,
    Var(&'a str),
    /// `${ns.name}`, or `${in.name:list}`
    Runtime(&'a str, &'a str, Option<ListForm>),
}

pub fn is_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse(s: &str) -> Result<Vec<Piece<'_>>, VarError> {
    let mut pieces = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        if i > 0 {
            pieces.push(Piece::Lit(&rest[..i]));
        }
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            pieces.push(Piece::Dollar);
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| {
                verr(
                    format!("`${{` without a closing `}}` in {s:?}"),
                    "close it with `}`, or write `$$` for a literal `$`",
                )
            })?;
            let name = &body[..end];
            match name.split_once('.') {
                Some((ns, port)) if RUNTIME_NAMESPACES.contains(&ns) && is_port_name(port) => {
                    pieces.push(Piece::Runtime(ns, port, None))
                }
                Some((ns, with_form)) if RUNTIME_NAMESPACES.contains(&ns) => {
                    pieces.push(runtime_with_form(ns, with_form)?)
                }
                _ if is_var_name(name) => pieces.push(Piece::Var(name)),
                _ => {
                    return Err(verr(
                        format!("`${{{name}}}` is neither a variable nor a placeholder"),
                        "variables are letters, digits and _; placeholders are `${in.NAME}`, `${in.NAME:list}`, `${in.NAME:list0}`, `${out.NAME}` and `${param.NAME}`",
                    ))
                }
            }
            rest = &body[end + 1..];
        } else {
            pieces.push(Piece::Lit("$"));
            rest = after;
        }
    }
    if !rest.is_empty() {
        pieces.push(Piece::Lit(rest));
    }
    Ok(pieces)
}

/// `${ns.port:form}`: only inputs have a form, and only the list ones.
fn runtime_with_form<'a>(ns: &'a str, with_form: &'a str) -> Result<Piece<'a>, VarError> {
    let whole = format!("${{{ns}.{with_form}}}");
    let Some((port, form)) = with_form.split_once(':').filter(|(port, _)| is_port_name(port)) else {
        return Err(verr(
            format!("`{whole}` is neither a variable nor a placeholder"),
            "port names are letters, digits, _ and -; placeholders are `${in.NAME}`, `${in.NAME:list}`, `${in.NAME:list0}`, `${out.NAME}` and `${param.NAME}`",
        ));
    };
    match ListForm::parse(form) {
        Some(f) if ns == "in" => Ok(Piece::Runtime(ns, port, Some(f))),
        Some(_) => Err(verr(
            format!("`{whole}`: only inputs can be given as a list file"),
            format!("write `${{{ns}.{port}}}`"),
        )),
        None => Err(verr(
            format!("`{whole}`: unknown form `{form}`"),
            format!(
                "write `${{in.{port}}}` (the paths), `${{in.{port}:list}}` (a file with one path per line) or `${{in.{port}:list0}}` (a file of NUL-terminated paths)"
            ),
        )),
    }
}

/// Names of ports and nodes: letters, digits, `_` and `-`.
pub fn is_port_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn lookup<'s>(scope: &'s Scope, name: &str) -> Result<&'s VarValue, VarError> {
    scope.get(name).ok_or_else(|| {
        let known: Vec<&str> = scope.keys().map(String::as_str).collect();
        let hint = match super::diag::closest(name, known.iter().copied()) {
            Some(c) => format!("did you mean `${{{c}}}`? "),
            None => String::new(),
        };
        verr(
            format!("unknown variable `${{{name}}}`"),
            format!("{hint}define it under [vars], or write `$${{{name}}}` for a literal `${{{name}}}`"),
        )
    })
}

fn scalar_text(name: &str, v: &VarValue) -> Result<String, VarError> {
    match v {
        VarValue::Scalar(p) => Ok(p.to_plain_string()),
        VarValue::List(_) => Err(verr(
            format!("`${{{name}}}` is a list, and this value is a single string"),
            "use a list variable in `for_each` values or as an array element (one element per value)",
        )),
    }
}

/// Interpolate a string that must stay one string. Run-time placeholders
/// are an error here.
pub fn scalar(s: &str, scope: &Scope) -> Result<String, VarError> {
    let mut out = String::with_capacity(s.len());
    for piece in parse(s)? {
        match piece {
            Piece::Lit(t) => out.push_str(t),
            Piece::Dollar => out.push('$'),
            Piece::Var(name) => out.push_str(&scalar_text(name, lookup(scope, name)?)?),
            Piece::Runtime(ns, port, _) => {
                return Err(verr(
                    format!("`${{{ns}.{port}}}` is a run-time placeholder, and they are only filled in inside `cmd`"),
                    "refer to ports by name here, or move the text into cmd",
                ))
            }
        }
    }
    Ok(out)
}

/// Interpolate a `cmd`: variables are replaced, `$$` and run-time
/// placeholders are kept for [`fill_runtime`].
pub fn command(s: &str, scope: &Scope) -> Result<String, VarError> {
    let mut out = String::with_capacity(s.len());
    for piece in parse(s)? {
        match piece {
            Piece::Lit(t) => out.push_str(t),
            Piece::Dollar => out.push_str("$$"),
            Piece::Var(name) => out.push_str(&scalar_text(name, lookup(scope, name)?)?),
            Piece::Runtime(ns, port, form) => {
                out.push_str("${");
                out.push_str(ns);
                out.push('.');
                out.push_str(port);
                if let Some(f) = form {
                    out.push(':');
                    out.push_str(f.suffix());
                }
                out.push('}');
            }
        }
    }
    Ok(out)
}

/// The run-time placeholders a command uses, as (namespace, name, list
/// form).
pub fn runtime_placeholders(cmd: &str) -> Result<Vec<(String, String, Option<ListForm>)>, VarError> {
    Ok(parse(cmd)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Runtime(ns, name, form) => Some((ns.to_owned(), name.to_owned(), form)),
            _ => None,
        })
        .collect())
}

/// Fill the run-time placeholders of a loaded `cmd`; `$$` becomes `$`.
/// `value` gets the namespace, the name and the list form if any.
pub fn fill_runtime(
    cmd: &str,
    mut value: impl FnMut(&str, &str, Option<ListForm>) -> Result<String, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(cmd.len() * 2);
    for piece in parse(cmd).map_err(|e| e.message)? {
        match piece {
            Piece::Lit(t) => out.push_str(t),
            Piece::Dollar => out.push('$'),
            Piece::Var(name) => return Err(format!("`${{{name}}}` was not replaced when the file was loaded")),
            Piece::Runtime(ns, name, form) => out.push_str(&value(ns, name, form)?),
        }
    }
    Ok(out)
}

/// Interpolate one array element: a list variable in it makes one element
/// per value (`"eval_${sets}.metrics"` -> one reference per set).
pub fn list_element(s: &str, scope: &Scope) -> Result<Vec<String>, VarError> {
    let pieces = parse(s)?;
    let mut list_var = None;
    for p in &pieces {
        if let Piece::Var(name) = p {
            if let VarValue::List(values) = lookup(scope, name)? {
                if list_var.is_some_and(|(n, _)| n != *name) {
                    return Err(verr(
                        format!("{s:?} uses two list variables"),
                        "use at most one list variable per element, or a for_each template",
                    ));
                }
                list_var = Some((*name, values));
            }
        }
    }
    let Some((list_name, values)) = list_var else {
        return Ok(vec![scalar(s, scope)?]);
    };
    let values = values.clone();
    values
        .iter()
        .map(|value| {
            let mut local = scope.clone();
            local.insert(list_name.to_owned(), VarValue::Scalar(value.clone()));
            scalar(s, &local)
        })
        .collect()
}

/// Like [`list_element`], but an element that is exactly `${list}` keeps
/// the list's typed values (for `for_each` values and list variables).
pub fn list_values(s: &str, scope: &Scope) -> Result<Vec<ParamValue>, VarError> {
    match whole_var(s, scope)? {
        Some(VarValue::List(items)) => Ok(items),
        Some(VarValue::Scalar(v)) => Ok(vec![v]),
        None => Ok(list_element(s, scope)?.into_iter().map(ParamValue::Str).collect()),
    }
}

/// If `s` is exactly `${name}`, the variable's typed value.
pub fn whole_var(s: &str, scope: &Scope) -> Result<Option<VarValue>, VarError> {
    match parse(s)?.as_slice() {
        [Piece::Var(name)] => Ok(Some(lookup(scope, name)?.clone())),
        _ => Ok(None),
    }
}

/// Interpolate a param value: a string that is exactly `${var}` takes the
/// variable's type; other strings are interpolated; arrays element-wise.
pub fn param(value: &ParamValue, scope: &Scope) -> Result<ParamValue, VarError> {
    Ok(match value {
        ParamValue::Str(s) => match whole_var(s, scope)? {
            Some(VarValue::Scalar(v)) => v,
            Some(VarValue::List(items)) => ParamValue::List(items),
            None => ParamValue::Str(scalar(s, scope)?),
        },
        ParamValue::List(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    ParamValue::Str(s) => out.extend(list_values(s, scope)?),
                    other => out.push(param(other, scope)?),
                }
            }
            ParamValue::List(out)
        }
        ParamValue::Table(t) => {
            let mut out = BTreeMap::new();
            for (k, v) in t {
                out.insert(k.clone(), param(v, scope)?);
            }
            ParamValue::Table(out)
        }
        other => other.clone(),
    })
}

/// Resolve `[vars]` (which may refer to each other) into a scope.
/// Errors name the variable.
pub fn resolve_globals(raw: &BTreeMap<String, ParamValue>) -> Result<Scope, (String, VarError)> {
    fn resolve(
        name: &str,
        raw: &BTreeMap<String, ParamValue>,
        done: &mut Scope,
        stack: &mut Vec<String>,
    ) -> Result<(), (String, VarError)> {
        if done.contains_key(name) {
            return Ok(());
        }
        if let Some(pos) = stack.iter().position(|n| n == name) {
            let mut cycle = stack[pos..].to_vec();
            cycle.push(name.to_owned());
            return Err((
                name.to_owned(),
                verr(
                    format!("variables refer to each other in a cycle: {}", cycle.join(" -> ")),
                    "give one of them a plain value",
                ),
            ));
        }
        let Some(value) = raw.get(name) else {
            return Ok(()); // reported as an unknown variable by the user of the scope
        };
        stack.push(name.to_owned());
        // Resolve the variables this one mentions first.
        let mut texts: Vec<&str> = Vec::new();
        match value {
            ParamValue::Str(s) => texts.push(s),
            ParamValue::List(items) => texts.extend(items.iter().filter_map(ParamValue::as_str)),
            _ => {}
        }
        for text in texts {
            if let Ok(pieces) = parse(text) {
                for p in pieces {
                    if let Piece::Var(dep) = p {
                        resolve(dep, raw, done, stack)?;
                    }
                }
            }
        }
        stack.pop();
        let err = |e: VarError| (name.to_owned(), e);
        let resolved = match value {
            ParamValue::Str(s) => match whole_var(s, done).map_err(err)? {
                Some(v) => v,
                None => VarValue::Scalar(ParamValue::Str(scalar(s, done).map_err(err)?)),
            },
            ParamValue::List(items) => {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        ParamValue::Str(s) => out.extend(list_values(s, done).map_err(err)?),
                        ParamValue::Int(_) | ParamValue::Float(_) | ParamValue::Bool(_) => out.push(item.clone()),
                        _ => {
                            return Err(err(verr(
                                "list variables hold strings or numbers, not nested arrays or tables",
                                "flatten the list",
                            )))
                        }
                    }
                }
                VarValue::List(out)
            }
            ParamValue::Table(_) => {
                return Err(err(verr("a variable cannot be a table", "use one variable per value")))
            }
            scalar_value => VarValue::Scalar(scalar_value.clone()),
        };
        done.insert(name.to_owned(), resolved);
        Ok(())
    }

    let mut done = Scope::new();
    for name in raw.keys() {
        if !is_var_name(name) {
            return Err((
                name.clone(),
                verr(
                    format!("`{name}` is not a valid variable name"),
                    "use letters, digits and _, not starting with a digit",
                ),
            ));
        }
        resolve(name, raw, &mut done, &mut Vec::new())?;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        let mut raw = BTreeMap::new();
        raw.insert("root".to_owned(), ParamValue::Str("data".into()));
        raw.insert("id".to_owned(), ParamValue::Str("${root}/ImageNet".into()));
        raw.insert("epochs".to_owned(), ParamValue::Int(5));
        raw.insert(
            "sets".to_owned(),
            ParamValue::List(vec![ParamValue::Str("SUN".into()), ParamValue::Str("Places".into())]),
        );
        resolve_globals(&raw).unwrap()
    }

    #[test]
    fn scalars_lists_and_types() {
        let s = scope();
        assert_eq!(scalar("${id}/train", &s).unwrap(), "data/ImageNet/train");
        assert_eq!(scalar("cost $$5 and $HOME", &s).unwrap(), "cost $5 and $HOME");
        assert_eq!(list_element("eval_${sets}.m", &s).unwrap(), vec!["eval_SUN.m", "eval_Places.m"]);
        assert_eq!(param(&ParamValue::Str("${epochs}".into()), &s).unwrap(), ParamValue::Int(5));
        assert!(scalar("${sets}", &s).unwrap_err().message.contains("is a list"));
        assert!(scalar("${nope}", &s).unwrap_err().message.contains("unknown variable"));
        assert!(scalar("${rot}", &s).unwrap_err().fix.contains("did you mean `${root}`?"));
        assert!(scalar("${in.x}", &s).unwrap_err().message.contains("only filled in inside `cmd`"));
        assert!(scalar("${a", &s).unwrap_err().message.contains("closing"));
    }

    #[test]
    fn commands_keep_runtime_placeholders() {
        let s = scope();
        let c = command("cp ${in.src} ${out.dst} # ${id} $$x", &s).unwrap();
        assert_eq!(c, "cp ${in.src} ${out.dst} # data/ImageNet $$x");
        let filled = fill_runtime(&c, |ns, n, _| Ok(format!("<{ns}:{n}>"))).unwrap();
        assert_eq!(filled, "cp <in:src> <out:dst> # data/ImageNet $x");
    }

    #[test]
    fn list_forms_survive_loading_and_reach_the_filler() {
        let s = scope();
        let c = command("xargs -0 cat < ${in.m:list0} > ${out.t}; wc -l ${in.m:list}", &s).unwrap();
        assert_eq!(c, "xargs -0 cat < ${in.m:list0} > ${out.t}; wc -l ${in.m:list}");
        let filled = fill_runtime(&c, |ns, n, f| Ok(format!("<{ns}:{n}:{}>", f.map_or("", ListForm::suffix)))).unwrap();
        assert_eq!(filled, "xargs -0 cat < <in:m:list0> > <out:t:>; wc -l <in:m:list>");
        assert_eq!(runtime_placeholders(&c).unwrap()[0], ("in".to_owned(), "m".to_owned(), Some(ListForm::Nul)));
        assert!(command("${out.t:list}", &s).unwrap_err().message.contains("only inputs"));
        let e = command("${in.m:lines}", &s).unwrap_err();
        assert!(e.message.contains("unknown form `lines`") && e.fix.contains("${in.m:list}"), "{e:?}");
        assert!(command("${in.m:}", &s).unwrap_err().message.contains("unknown form"));
        assert!(command("${in.a b:list}", &s).unwrap_err().message.contains("neither a variable nor a placeholder"));
    }

    #[test]
    fn variable_cycles_are_reported() {
        let mut raw = BTreeMap::new();
        raw.insert("a".to_owned(), ParamValue::Str("${b}".into()));
        raw.insert("b".to_owned(), ParamValue::Str("${a}".into()));
        let (_, e) = resolve_globals(&raw).unwrap_err();
        assert!(e.message.contains("a -> b -> a"), "{e:?}");
    }
}
