//! Expanding `#[circuit_breaker]`: the signature is kept and only the body is wrapped.
//!
//! ```text
//! async fn complete(&self, prompt: &str) -> Result<String, LlmError> {
//!     static SLOT: __private::Slot = __private::Slot::new();
//!     let breaker = SLOT.get("openai", "my_crate::complete", Preset::Llm, || /* config */);
//!     let result = 'admitted: {
//!         let permit = match breaker.try_acquire() {
//!             Ok(permit) => permit,
//!             Err(_) => return Self::cached_answer(self, prompt).await, // with `fallback`
//!             Err(e) => break 'admitted Err(__private::CallError::Rejected(e)), // without
//!         };
//!         permit.run(async move { /* fake return */ { /* body */ } }).await
//!     };
//!     __private::finish(result) // Err(E::from(BreakerError)) on refusal or timeout
//! }
//! ```
//!
//! Admission is checked before the body's `async move` block exists, so a refused call still
//! has every argument to hand to the fallback. Every fallback runs as a member of a failover
//! chain (`__private::in_chain(retry_after, fallback(..))`); with `fallback_with_cause` its last
//! argument is the cause (`__private::refused_cause`, or `due_cause` after the call), checked to
//! be `FallbackCause<E>` by `__private::cause_arg`. The permit leaves the admission's `Result` in a
//! statement of its own, so the `Result` is not kept in the future across the `.await`.
//!
//! With `key = <expr>`, `breaker` is the key's: `let lease = __private::keyed(&SLOT, ..,
//! key_text(&(<expr>))); let breaker = &*lease;`, the lease giving the breaker back to the
//! thread's cache when the call ends (a streamed function's breaker is shared instead: its stream
//! outlives the body).
//!
//! A streamed function (`-> Result<impl Stream<Item = Result<T, E>>, E>`, or `stream = true`)
//! runs its body with `permit.run_stream(...)`, and returns the breaker's stream with its errors
//! mapped to `E` (`__private::finish_stream`); with a fallback, the body's stream and the
//! fallback's are two arms of one `__private::StreamOr`, as `impl Stream` needs one type.

use proc_macro2::{Delimiter, Group, Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned as _;
use syn::token::Brace;
use syn::{
    Attribute, FnArg, GenericArgument, Ident, Pat, PatIdent, PathArguments, ReturnType, Signature, Token,
    Type, Visibility,
};

use crate::args::{self, Args, FallbackOn, Value};

/// The entry point: the item, rewritten, or as it was with the errors appended.
pub(crate) fn circuit_breaker(args: TokenStream, item: TokenStream) -> TokenStream {
    let function: MaybeItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        Err(_) => {
            return with_error(
                item,
                syn::Error::new(
                    Span::call_site(),
                    "#[circuit_breaker] goes on an `async fn` returning `Result<T, E>`",
                ),
            )
        }
    };
    let checked_args = args::parse(args);
    let checked_fn = check_fn(&function);
    match (checked_args, checked_fn) {
        (Ok(args), Ok(shape)) => match streamed(&args, &shape) {
            Ok(streamed) => expand(&function, &args, &shape, &streamed),
            Err(error) => with_error(item, error),
        },
        (Err(mut error), Err(fn_error)) => {
            error.combine(fn_error);
            with_error(item, error)
        }
        (Err(error), _) | (_, Err(error)) => with_error(item, error),
    }
}

/// When the attribute cannot be applied, the item is still emitted unchanged, so that the
/// mistake gives one error instead of a second one about a missing function.
fn with_error(mut item: TokenStream, error: syn::Error) -> TokenStream {
    item.extend(error.into_compile_error());
    item
}

/// A function whose body is kept as tokens (it may not even parse); like `syn::ItemFn`, but it
/// also takes a function without a body, to say what is wrong with it.
struct MaybeItemFn {
    outer_attrs: Vec<Attribute>,
    inner_attrs: Vec<Attribute>,
    vis: Visibility,
    sig: Signature,
    /// `Err` holds the `;` of a function without a body.
    body: Result<(Brace, TokenStream), Token![;]>,
}

impl Parse for MaybeItemFn {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let outer_attrs = input.call(Attribute::parse_outer)?;
        let vis = input.parse()?;
        let sig = input.parse()?;
        if input.peek(Token![;]) {
            return Ok(MaybeItemFn {
                outer_attrs,
                inner_attrs: Vec::new(),
                vis,
                sig,
                body: Err(input.parse()?),
            });
        }
        let content;
        let brace = syn::braced!(content in input);
        let inner_attrs = content.call(Attribute::parse_inner)?;
        let block: TokenStream = content.parse()?;
        Ok(MaybeItemFn {
            outer_attrs,
            inner_attrs,
            vis,
            sig,
            body: Ok((brace, block)),
        })
    }
}

/// What the expansion needs to know about the signature.
struct Shape {
    /// The declared return type.
    ret: Type,
    /// Where a missing `From<BreakerError>` is reported: `E` in `Result<T, E>`, or the whole
    /// return type when it is an alias such as `io::Result<T>`.
    error_span: Span,
    /// `Result<impl Stream<...>, E>`: a streamed function, detected from the return type.
    stream: Option<DetectedStream>,
    /// `E` of a declared `Result<T, CallError<E>>`: the body is then a `Result<T, E>`, and the
    /// breaker's `CallError` is returned as it is.
    call_error: Option<Type>,
}

/// A return type `Result<impl Stream<Item = I>, E>`, as written.
struct DetectedStream {
    /// `I`, when the `impl Stream` says it.
    item: Option<Type>,
    /// `E`, when the type is spelled `Result<_, E>`.
    error: Option<Type>,
}

/// How the function's stream, if any, is returned.
enum Streamed<'a> {
    /// Not a streamed function: the call is judged when the body returns.
    No,
    /// `Result<impl Stream<Item = I>, E>`: the guarded stream is returned as it is.
    Impl(&'a DetectedStream),
    /// `stream = true` on another type: the guarded stream is boxed as the declared type.
    Boxed,
}

fn check_fn(function: &MaybeItemFn) -> syn::Result<Shape> {
    let sig = &function.sig;
    if sig.asyncness.is_none() {
        let message = if looks_like_async_trait(sig) {
            "#[circuit_breaker] cannot wrap a method that #[async_trait] has already rewritten \
             into a fn returning `Pin<Box<dyn Future>>`; use a native `async fn` in the trait \
             (without #[async_trait]), or put #[circuit_breaker] on an inherent `async fn` and \
             call it from this method"
        } else {
            "#[circuit_breaker] works on `async fn`; the `async` keyword is missing"
        };
        return Err(syn::Error::new(sig.fn_token.span, message));
    }
    if let Err(semicolon) = &function.body {
        return Err(syn::Error::new(
            semicolon.span,
            "#[circuit_breaker] needs a function body to wrap; put it on the function in the \
             `impl` block, not on the trait's declaration",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(syn::Error::new(
            variadic.span(),
            "#[circuit_breaker] does not support variadic functions",
        ));
    }
    let ret = match &sig.output {
        ReturnType::Default => {
            return Err(syn::Error::new(
                sig.paren_token.span.close(),
                "#[circuit_breaker] needs a function returning `Result<T, E>`, so that a refused \
                 call can return `Err(E::from(BreakerError))`; add `-> Result<T, E>`",
            ))
        }
        ReturnType::Type(_, ty) => &**ty,
    };
    let error_span = result_error_span(ret)?;
    Ok(Shape {
        ret: ret.clone(),
        error_span,
        stream: detect_stream(ret),
        call_error: result_args(ret)
            .and_then(|(_, error)| call_error_inner(error))
            .cloned(),
    })
}

/// `T` and `E` of a type spelled `Result<T, E>` (any path ending in `Result`).
fn result_args(ty: &Type) -> Option<(&Type, &Type)> {
    let path = match ty {
        Type::Paren(inner) => return result_args(&inner.elem),
        Type::Group(inner) => return result_args(&inner.elem),
        Type::Path(path) if path.qself.is_none() => path,
        _ => return None,
    };
    let last = path.path.segments.last().filter(|last| last.ident == "Result")?;
    let PathArguments::AngleBracketed(generics) = &last.arguments else {
        return None;
    };
    let mut types = generics.args.iter().filter_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    });
    match (types.next(), types.next(), types.next()) {
        (Some(ok), Some(error), None) => Some((ok, error)),
        _ => None,
    }
}

/// `E` of `CallError<E>` (the path may be imported, or `cb_runtime::CallError<E>`).
fn call_error_inner(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else {
        return None;
    };
    let last = path
        .path
        .segments
        .last()
        .filter(|last| last.ident == "CallError")?;
    let PathArguments::AngleBracketed(generics) = &last.arguments else {
        return None;
    };
    match generics.args.iter().collect::<Vec<_>>()[..] {
        [GenericArgument::Type(inner)] => Some(inner),
        _ => None,
    }
}

/// The type the body's `async` block returns: the declared type with every `impl Trait`
/// replaced by `_`; for a declared `Result<T, CallError<E>>`, `Result<T, E>` (and
/// `Result<_, E>` for a stream, whose items the body yields with `E` too).
fn body_type(shape: &Shape, streamed: bool) -> Type {
    let mut ty = erase_impl_trait(&shape.ret);
    let Some(inner) = &shape.call_error else {
        return ty;
    };
    let mut at = &mut ty;
    while let Type::Paren(syn::TypeParen { elem, .. }) | Type::Group(syn::TypeGroup { elem, .. }) = at {
        at = &mut **elem;
    }
    if let Type::Path(path) = at {
        if let Some(PathArguments::AngleBracketed(generics)) =
            path.path.segments.last_mut().map(|last| &mut last.arguments)
        {
            let mut types = generics.args.iter_mut().filter_map(|arg| match arg {
                GenericArgument::Type(ty) => Some(ty),
                _ => None,
            });
            if let (Some(ok), Some(error)) = (types.next(), types.next()) {
                if streamed {
                    *ok = Type::Infer(syn::TypeInfer {
                        underscore_token: Default::default(),
                    });
                }
                *error = inner.clone();
            }
        }
    }
    ty
}

/// `Result<impl Stream<Item = I>, E>` (or an alias `R<impl Stream<...>>`), read from the return
/// type.
fn detect_stream(ty: &Type) -> Option<DetectedStream> {
    let path = match ty {
        Type::Paren(inner) => return detect_stream(&inner.elem),
        Type::Group(inner) => return detect_stream(&inner.elem),
        Type::Path(path) if path.qself.is_none() => path,
        _ => return None,
    };
    let last = path.path.segments.last()?;
    let PathArguments::AngleBracketed(generics) = &last.arguments else {
        return None;
    };
    let mut types = generics.args.iter().filter_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    });
    let Some(Type::ImplTrait(ok)) = types.next() else {
        return None;
    };
    let stream = ok.bounds.iter().find_map(|bound| match bound {
        syn::TypeParamBound::Trait(t) => t.path.segments.last().filter(|s| s.ident == "Stream"),
        _ => None,
    })?;
    let item = match &stream.arguments {
        PathArguments::AngleBracketed(generics) => generics.args.iter().find_map(|arg| match arg {
            GenericArgument::AssocType(assoc) if assoc.ident == "Item" => Some(assoc.ty.clone()),
            _ => None,
        }),
        _ => None,
    };
    let error = if last.ident == "Result" {
        types.next().cloned()
    } else {
        None
    };
    Some(DetectedStream { item, error })
}

/// Whether the function streams, from its return type and the `stream` key.
fn streamed<'a>(args: &Args, shape: &'a Shape) -> syn::Result<Streamed<'a>> {
    let streamed = match (args.stream, &shape.stream) {
        (Some((false, _)), _) | (None, None) => Streamed::No,
        (_, Some(detected)) => Streamed::Impl(detected),
        (Some((true, _)), None) => Streamed::Boxed,
    };
    if let Streamed::Impl(DetectedStream { item: Some(item), .. }) = &streamed {
        if !may_be_result(item) {
            return Err(syn::Error::new(
                item.span(),
                "the items of a streamed #[circuit_breaker] function must be `Result<T, E>`, with \
                 the function's error type: the breaker tells a stream cut halfway (an `Err` item) \
                 from one that ended; add `stream = false` to judge the call when the stream is \
                 opened instead",
            ));
        }
    }
    Ok(streamed)
}

/// The span of `E` in `Result<T, E>`, the whole type for a `...Result` alias, or an error when
/// the type is certainly not a `Result`.
fn result_error_span(ty: &Type) -> syn::Result<Span> {
    let not_result = || {
        syn::Error::new(
            ty.span(),
            "#[circuit_breaker] needs a function returning `Result<T, E>`, so that a refused \
             call can return `Err(E::from(BreakerError))`",
        )
    };
    match ty {
        Type::Paren(inner) => result_error_span(&inner.elem),
        Type::Group(inner) => result_error_span(&inner.elem),
        Type::Path(path) if path.qself.is_none() => {
            let Some(last) = path.path.segments.last() else {
                return Err(not_result());
            };
            let name = last.ident.to_string();
            if name == "Result" {
                if let PathArguments::AngleBracketed(generics) = &last.arguments {
                    let types: Vec<&Type> = generics
                        .args
                        .iter()
                        .filter_map(|arg| match arg {
                            GenericArgument::Type(ty) => Some(ty),
                            _ => None,
                        })
                        .collect();
                    if let [_, error] = types[..] {
                        // A path's last segment: the name of the type (`Error` of
                        // `tokio_postgres::Error`), as a span cannot cover several tokens.
                        return Ok(match error {
                            Type::Path(path) => {
                                path.path.segments.last().map_or(error.span(), |s| s.ident.span())
                            }
                            _ => error.span(),
                        });
                    }
                }
                Ok(ty.span())
            } else if NOT_RESULTS.contains(&name.as_str()) {
                Err(not_result())
            } else {
                // An alias (`io::Result<T>`, `LlmResult<T>`, ...): the type checker decides.
                Ok(ty.span())
            }
        }
        _ => Err(not_result()),
    }
}

/// `false` when `ty` is certainly not a `Result`; an alias may be one.
fn may_be_result(ty: &Type) -> bool {
    match ty {
        Type::Paren(inner) => may_be_result(&inner.elem),
        Type::Group(inner) => may_be_result(&inner.elem),
        Type::Path(path) if path.qself.is_none() => path
            .path
            .segments
            .last()
            .is_some_and(|last| !NOT_RESULTS.contains(&last.ident.to_string().as_str())),
        // `<T as Trait>::Output` and macros may be anything.
        Type::Path(_) | Type::Macro(_) | Type::Verbatim(_) => true,
        _ => false,
    }
}

/// Common types that are certainly not a `Result`.
const NOT_RESULTS: &[&str] = &[
    "Option", "String", "Vec", "Box", "Rc", "Arc", "HashMap", "BTreeMap", "Self", "bool", "char", "str",
    "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize", "f32", "f64",
    "Pin",
];

/// `fn ... -> Pin<Box<dyn Future<...> + ...>>`: what #[async_trait] leaves of an `async fn`.
fn looks_like_async_trait(sig: &Signature) -> bool {
    match &sig.output {
        ReturnType::Type(_, ty) => match &**ty {
            Type::Path(path) => {
                let text = path.to_token_stream().to_string();
                path.path.segments.last().is_some_and(|last| last.ident == "Pin") && text.contains("Future")
            }
            _ => false,
        },
        ReturnType::Default => false,
    }
}

/// A hidden local: user code cannot name it, whatever it is called.
fn hidden(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

fn expand(function: &MaybeItemFn, args: &Args, shape: &Shape, streamed: &Streamed<'_>) -> TokenStream {
    let MaybeItemFn {
        outer_attrs,
        inner_attrs,
        vis,
        sig,
        body,
    } = function;
    let Ok((brace, block)) = body else {
        // `check_fn` refuses a function without a body.
        return TokenStream::new();
    };
    let krate = &args.krate;
    // Imported once, so that a wrong `crate = "..."` path is one error.
    let private_import = hidden("__cb_private");
    let private = private_import.to_token_stream();

    let slot = hidden("__CB_SLOT");
    let breaker = hidden("__cb_breaker");
    let permit = hidden("__cb_permit");
    let rejected = hidden("__cb_rejected");
    let result = Ident::new("__cb_result", Span::mixed_site().located_at(shape.error_span));

    // With a fallback, every parameter must be nameable; patterns are bound inside the body.
    let mut sig = sig.clone();
    let mut rebinds = TokenStream::new();
    let mut call_args = Vec::new();
    if args.fallback.is_some() {
        for (index, input) in sig.inputs.iter_mut().enumerate() {
            match input {
                FnArg::Receiver(receiver) => call_args.push(receiver.self_token.to_token_stream()),
                FnArg::Typed(typed) => match &*typed.pat {
                    Pat::Ident(PatIdent {
                        by_ref: None,
                        subpat: None,
                        ident,
                        ..
                    }) => call_args.push(ident.to_token_stream()),
                    pattern => {
                        let arg = format_ident!("__cb_arg{}", index, span = Span::mixed_site());
                        rebinds.extend(quote!(let #pattern = #arg;));
                        call_args.push(arg.to_token_stream());
                        *typed.pat = syn::parse_quote!(#arg);
                    }
                },
            }
        }
    }

    // A never-taken return of the declared type, so that the body's type is inferred from the
    // signature and type errors land on the user's code.
    let ret_span = Span::call_site().located_at(shape.ret.span());
    let fake_ret = hidden("__cb_fake_return");
    let is_stream = !matches!(streamed, Streamed::No);
    let ret_ty = body_type(shape, is_stream);
    let fake_return = quote_spanned! {ret_span=>
        #[allow(
            unknown_lints,
            unreachable_code,
            clippy::diverging_sub_expression,
            clippy::empty_loop,
            clippy::let_unit_value,
            clippy::let_with_type_underscore,
            clippy::needless_return,
            clippy::unreachable
        )]
        if false {
            let #fake_ret: #ret_ty = loop {};
            return #fake_ret;
        }
    };
    // The user's braces, spanned as the expansion's (at the user's place): rustc's style lints
    // (`unused_braces` on a one-line body) do not fire on generated blocks, and `cargo fix`
    // has nothing to rewrite.
    let block_span = Span::call_site().located_at(brace.span.join());
    let mut user_block = Group::new(Delimiter::Brace, block.clone());
    user_block.set_span(block_span);
    let mut async_body = Group::new(Delimiter::Brace, quote!(#fake_return #rebinds #user_block));
    async_body.set_span(block_span);
    // With a fallback after the call (`fallback_on = "breaker"` or `"failure"`), the body
    // borrows the arguments, which the fallback is then given.
    let after_call = args.fallback.is_some() && args.fallback_on > FallbackOn::Refusal;
    let async_block = if after_call {
        quote_spanned!(block_span=> async #async_body)
    } else {
        quote_spanned!(block_span=> async move #async_body)
    };

    let classifier = classifier(args, &private);
    let run = match (&classifier, is_stream) {
        (None, true) => quote!(#permit.run_stream(#async_block)),
        (Some(classify), true) => quote!(#permit.run_stream_with(#async_block, #classify)),
        (None, false) => quote!(#permit.run(#async_block)),
        (Some(classify), false) => quote!(#permit.run_classified(#async_block, #private::errors(#classify))),
    };

    // The fallback's call, and the arm that runs it on a refusal. It runs as a member of a
    // failover chain (`in_chain`), with the chain's soonest retry `retry_after`; with
    // `fallback_with_cause`, `cause` is its last argument.
    let key_text = hidden("__cb_key");
    let cause_key = match &args.key {
        Some(_) if args.fallback_with_cause => quote!(#private::Some(#key_text)),
        _ => quote!(#private::None),
    };
    let cause = hidden("__cb_cause");
    // The cause's `E` is the body's error type, written where the signature says it (for an
    // alias such as `io::Result<T>`, inferred), so that a fallback taking another
    // `FallbackCause<_>` is refused at its path.
    let cause_error = shape
        .call_error
        .clone()
        .or_else(|| result_args(&shape.ret).map(|(_, error)| error.clone()));
    let cause_ty = match &cause_error {
        Some(error) => quote!(: #private::FallbackCause<#error>),
        None => TokenStream::new(),
    };
    let fallback_call = args.fallback.as_ref().map(|path| {
        let has_receiver = matches!(sig.inputs.first(), Some(FnArg::Receiver(_)));
        let callee = match path.get_ident() {
            Some(ident) if has_receiver => {
                let self_ty = Ident::new("Self", ident.span());
                quote!(#self_ty::#ident)
            }
            _ => path.to_token_stream(),
        };
        let fallback_span = Span::call_site().located_at(path.span());
        let private_at_fallback = Ident::new("__cb_private", Span::mixed_site().located_at(path.span()));
        let with_cause = args
            .fallback_with_cause
            .then(|| quote_spanned!(fallback_span=> #private_at_fallback::cause_arg(#cause)));
        let call_args: Vec<TokenStream> = call_args.iter().cloned().chain(with_cause).collect();
        move |retry_after: TokenStream| {
            let call = quote_spanned! {fallback_span=>
                #private_at_fallback::in_chain(#retry_after, #callee(#(#call_args),*)).await
            };
            if let Streamed::Impl(_) = streamed {
                quote_spanned!(fallback_span=> #private_at_fallback::fallback_stream(#call))
            } else {
                call
            }
        }
    });
    // The admission's `Result` must not live across the call's `.await` (it would take 32
    // bytes of every call's future): the permit is moved out of it in a statement of its own,
    // and a refusal leaves the labeled block with the call's result.
    let admitted = syn::Lifetime {
        apostrophe: Span::mixed_site(),
        ident: hidden("__cb_admitted"),
    };
    let on_rejected = match &fallback_call {
        None => quote! {
            #private::Err(#rejected) => break #admitted #private::Err(#private::CallError::Rejected(#rejected)),
        },
        Some(call) if args.fallback_with_cause => {
            let call = call(quote!(#private::FallbackCause::retry_after(&#cause)));
            quote! {
                #private::Err(#rejected) => {
                    #private::fell_back(#breaker, #private::FallbackReason::Refusal);
                    let #cause #cause_ty = #private::refused_cause(#rejected, #cause_key);
                    return #call;
                }
            }
        }
        Some(call) => {
            let call = call(quote!(#private::refused_retry_after(&#rejected)));
            quote! {
                #private::Err(#rejected) => {
                    #private::fell_back(#breaker, #private::FallbackReason::Refusal);
                    return #call;
                }
            }
        }
    };
    // `fallback_on = "breaker"`, `"failure"` or `"error"`: the fallback may run after the call
    // too, when the call's result (asked again of the classifier it was judged by) says so.
    let after = match &fallback_call {
        Some(call) if after_call => {
            let level = match args.fallback_on {
                FallbackOn::Refusal | FallbackOn::Breaker => quote!(Breaker),
                FallbackOn::Failure => quote!(Failure),
                FallbackOn::Error => quote!(Error),
            };
            let classify = classifier
                .clone()
                .unwrap_or_else(|| quote!(#private::ErrIsFailure));
            let due = hidden("__cb_due");
            let error = hidden("__cb_error");
            let run = if args.fallback_with_cause {
                let call = call(quote!(#private::FallbackCause::retry_after(&#cause)));
                quote! {
                    if let #private::Err(#error) = #result {
                        let #cause #cause_ty = #private::due_cause(#error, #due, #cause_key);
                        return #call;
                    }
                }
            } else {
                let call = call(quote!(#private::due_retry_after(&#result, #due)));
                quote!(return #call;)
            };
            quote! {
                if let #private::Some(#due) = #private::fallback_due(&#result, #private::FallbackOn::#level, #classify) {
                    #private::fell_back(#breaker, #due.reason);
                    #run
                }
            }
        }
        _ => TokenStream::new(),
    };

    let config = config(args, &private);
    let preset = preset(args, &private);
    let name = &args.name;
    let fn_name = sig.ident.to_string();
    let fn_name = fn_name.trim_start_matches("r#");
    // Every token at `E`, so that a missing `From<BreakerError>` is reported there alone.
    let private_at_error = Ident::new("__cb_private", Span::mixed_site().located_at(shape.error_span));
    // A declared `CallError<E>` is returned as the breaker made it (`*_passed`); any other `E`
    // takes the breaker's error with `E::from(BreakerError)`.
    let finish = match (streamed, shape.call_error.is_some()) {
        (Streamed::No, false) => quote!(finish),
        (Streamed::No, true) => quote!(finish_passed),
        (Streamed::Impl(_), false) if args.fallback.is_some() => quote!(finish_stream_or),
        (Streamed::Impl(_), true) if args.fallback.is_some() => quote!(finish_stream_or_passed),
        (Streamed::Impl(_), false) => quote!(finish_stream),
        (Streamed::Impl(_), true) => quote!(finish_stream_passed),
        (Streamed::Boxed, false) => quote!(finish_boxed_stream),
        (Streamed::Boxed, true) => quote!(finish_boxed_stream_passed),
    };
    let finish_at_error = Ident::new(&finish.to_string(), shape.error_span);
    let finish = quote_spanned!(shape.error_span=> #private_at_error::#finish_at_error(#result));
    // `Item = Result<T, E>` with the function's `E`, checked where the item type is written.
    let item_check = match streamed {
        Streamed::Impl(DetectedStream {
            item: Some(item),
            error: Some(error),
        }) => {
            let private_at_item = Ident::new("__cb_private", Span::mixed_site().located_at(item.span()));
            quote_spanned!(item.span()=> #private_at_item::stream_items::<#item, #error>();)
        }
        _ => TokenStream::new(),
    };

    // The breaker: the function's own, or with `key = <expr>` its key's in the family `name`,
    // the key evaluated here, before the body, from the arguments and `self`.
    let origin = quote!(#private::concat!(#private::module_path!(), "::", #fn_name));
    let pick_breaker = match &args.key {
        None => quote! {
            let #breaker = #slot.get(#name, #origin, #preset, || #config);
        },
        Some(key) => {
            let keyed = hidden("__cb_keyed");
            let private_at_key = Ident::new("__cb_private", Span::mixed_site().located_at(key.span()));
            // A parameter of a shared reference type is copied, and what it points to borrowed
            // (the same type as for any other key): a borrow of the parameter itself would keep
            // it in the future across the call's `.await` (16 bytes for a `&str`), though the
            // key is read only here.
            let operand = if is_shared_ref_param(key, &function.sig) {
                quote_spanned!(key.span()=> (*{ #key }))
            } else {
                quote_spanned!(key.span()=> (#key))
            };
            let mut key_text = quote_spanned!(key.span()=> #private_at_key::key_text(&#operand));
            let mut bind_key = TokenStream::new();
            if args.fallback_with_cause {
                // The fallback's cause tells the key: its text is kept for it, borrowed from
                // the key's value (a temporary, such as `model.to_string()`, lives as long).
                let value = hidden("__cb_key_value");
                let text = hidden("__cb_key");
                bind_key = quote_spanned! {key.span()=>
                    let #value = &#operand;
                    let #text: &str = #private_at_key::key_text(#value);
                };
                key_text = text.to_token_stream();
            }
            let pick = match streamed {
                // The stream outlives the body: its permit owns a share of the breaker.
                Streamed::Impl(_) | Streamed::Boxed => quote! {
                    let #breaker = #private::keyed_owned(&#slot, #name, #origin, #preset, || #config, #key_text);
                },
                Streamed::No => quote! {
                    let #keyed = #private::keyed(&#slot, #name, #origin, #preset, || #config, #key_text);
                    let #breaker: &#private::CircuitBreaker = &#keyed;
                },
            };
            quote!(#bind_key #pick)
        }
    };

    // `health_check = path`: installed on the breaker (or the family) once it exists. The
    // path is called where it is written, so that a wrong signature is an error there.
    let health_check = match &args.health_check {
        None => TokenStream::new(),
        Some(path) => {
            let checks = hidden("__CB_HEALTH_CHECK");
            let key = Ident::new("__cb_key", Span::mixed_site().located_at(path.span()));
            let install = match args.key {
                None => {
                    let call = quote_spanned!(path.span()=> #private::health_check_future(#path()));
                    quote!(#checks.install(&#slot, || #call);)
                }
                Some(_) => {
                    let call = quote_spanned!(path.span()=> #private::health_check_future(#path(&#key)));
                    quote!(#checks.install_keyed(&#slot, |#key: &str| {
                        let #key = <str as #private::ToOwned>::to_owned(#key);
                        async move { #call.await }
                    });)
                }
            };
            quote! {
                static #checks: #private::HealthCheckSlot = #private::HealthCheckSlot::new();
                #install
            }
        }
    };

    quote! {
        #(#outer_attrs)*
        #vis #sig {
            #(#inner_attrs)*
            use #krate::__private as #private_import;
            static #slot: #private::Slot = #private::Slot::new();
            #pick_breaker
            #health_check
            #item_check
            let #result = #admitted: {
                let #permit = match #breaker.try_acquire() {
                    #private::Ok(#permit) => #permit,
                    #on_rejected
                };
                #run.await
            };
            #after
            #finish
        }
    }
}

/// `key` names a parameter of `sig` whose type is a shared reference (`model: &str`), which is
/// `Copy`.
fn is_shared_ref_param(key: &syn::Expr, sig: &syn::Signature) -> bool {
    let syn::Expr::Path(syn::ExprPath {
        qself: None, path, ..
    }) = key
    else {
        return false;
    };
    let Some(name) = path.get_ident() else {
        return false;
    };
    sig.inputs.iter().any(|input| match input {
        FnArg::Typed(typed) => {
            matches!(&*typed.pat, Pat::Ident(PatIdent { ident, by_ref: None, subpat: None, .. }) if ident == name)
                && matches!(&*typed.ty, syn::Type::Reference(r) if r.mutability.is_none())
        }
        FnArg::Receiver(_) => false,
    })
}

/// The classifier of the function's errors, when a key classifies them: the keys folded over
/// `ErrIsFailure`, the one asked first outermost (`throttle_if`, `ignore_if`, then `failure_if`). Each
/// predicate is called through a closure, so that a wrong signature is one type error at its
/// path.
fn classifier(args: &Args, private: &TokenStream) -> Option<TokenStream> {
    if !args.classify.is_set() {
        return None;
    }
    let steps = [
        (quote!(failure_if), &args.classify.failure_if),
        (quote!(ignore_if), &args.classify.ignore_if),
    ];
    // `classify = path` judges every error (it comes without `failure_if` and `ignore_if`).
    let mut classify = match &args.classify.classify {
        Some(path) => {
            let error = Ident::new("__cb_error", Span::mixed_site().located_at(path.span()));
            let call = quote_spanned!(path.span()=> #path(#error));
            quote!(#private::classify_with(|#error| #call))
        }
        None => quote!(#private::ErrIsFailure),
    };
    for (helper, path) in steps {
        let Some(path) = path else { continue };
        let error = Ident::new("__cb_error", Span::mixed_site().located_at(path.span()));
        let call = quote_spanned!(path.span()=> #path(#error));
        classify = quote!(#private::#helper(#classify, |#error| #call));
    }
    // `throttle_if` (with `retry_after`) is asked first: folded last, outermost.
    let (throttle_if, retry_after) = (&args.classify.throttle_if, &args.classify.retry_after);
    if throttle_if.is_some() || retry_after.is_some() {
        let call = |path: &Option<syn::Path>, absent: TokenStream| match path {
            Some(path) => {
                let error = Ident::new("__cb_error", Span::mixed_site().located_at(path.span()));
                let call = quote_spanned!(path.span()=> #path(#error));
                quote!(|#error| #call)
            }
            None => quote!(|_| #absent),
        };
        let is_throttled = call(throttle_if, quote!(false));
        let hint = call(retry_after, quote!(#private::None));
        classify = quote!(#private::throttle_if(#classify, #is_throttled, #hint));
    }
    Some(classify)
}

/// The function's `Preset`: `Preset::ALL[i]` is the preset named `cb_syntax::PRESETS[i]`.
fn preset(args: &Args, private: &TokenStream) -> TokenStream {
    let (index, span) = args.preset;
    let index = Literal::usize_unsuffixed(index);
    quote_spanned!(span=> #private::Preset::ALL[#index])
}

/// The expression building the function's `Config`: the preset's builder, then
/// `__private::set(builder, "<field>", <value>)` for each override.
fn config(args: &Args, private: &TokenStream) -> TokenStream {
    let preset = &preset(args, private);
    if args.overrides.is_empty() {
        return quote!(#private::preset_config(#preset));
    }
    let name = &args.name;
    let builder = hidden("__cb_builder");
    let built = args.overrides.iter().fold(quote!(#builder), |built, o| {
        let field = syn::LitStr::new(&o.setter.to_string(), o.setter.span());
        let value = match o.value {
            Value::Field(value) => field_value(value, private),
            Value::MinimumCallsWithin(n) => {
                let n = Literal::u32_suffixed(n);
                quote!(#private::FieldValue::Count(#private::minimum_calls_within(#preset, #n)))
            }
        };
        quote!(#private::set(#built, #field, #value))
    });
    quote! {
        #private::build_config(#name, #preset, |#builder: #private::ConfigBuilder| #built)
    }
}

/// A checked field value, as an expression of `__private::FieldValue`.
fn field_value(value: cb_syntax::Value, private: &TokenStream) -> TokenStream {
    use cb_syntax::Value as V;
    match value {
        V::Preset(name) => quote!(#private::FieldValue::Preset(#name)),
        V::Count(n) => {
            let n = Literal::u32_suffixed(n);
            quote!(#private::FieldValue::Count(#n))
        }
        V::Rate(r) => {
            let r = Literal::f64_suffixed(r);
            quote!(#private::FieldValue::Rate(#r))
        }
        V::Duration(nanos) => {
            let nanos = Literal::u64_suffixed(nanos);
            quote!(#private::FieldValue::Duration(#nanos))
        }
        V::Off => quote!(#private::FieldValue::Off),
        V::WindowCalls(n) => {
            let n = Literal::u32_suffixed(n);
            quote!(#private::FieldValue::WindowCalls(#n))
        }
        V::WindowTime(nanos) => {
            let nanos = Literal::u64_suffixed(nanos);
            quote!(#private::FieldValue::WindowTime(#nanos))
        }
        V::Backoff(b) => {
            let multiplier = Literal::f64_suffixed(b.multiplier);
            let cap_nanos = Literal::u64_suffixed(b.cap_nanos);
            let jitter = Literal::f64_suffixed(b.jitter);
            quote!(#private::FieldValue::Backoff(#private::BackoffText {
                multiplier: #multiplier,
                cap_nanos: #cap_nanos,
                jitter: #jitter,
            }))
        }
        V::Word(word) => quote!(#private::FieldValue::Word(#word)),
        V::Multiplier(k) => {
            let k = Literal::f64_suffixed(k);
            quote!(#private::FieldValue::Multiplier(#k))
        }
    }
}

/// The type with every `impl Trait` replaced by `_`, for a `let` annotation.
fn erase_impl_trait(ty: &Type) -> Type {
    let mut ty = ty.clone();
    erase_in(&mut ty);
    ty
}

fn erase_in(ty: &mut Type) {
    match ty {
        Type::ImplTrait(_) => {
            *ty = Type::Infer(syn::TypeInfer {
                underscore_token: Default::default(),
            })
        }
        Type::Paren(inner) => erase_in(&mut inner.elem),
        Type::Group(inner) => erase_in(&mut inner.elem),
        Type::Reference(inner) => erase_in(&mut inner.elem),
        Type::Ptr(inner) => erase_in(&mut inner.elem),
        Type::Slice(inner) => erase_in(&mut inner.elem),
        Type::Array(inner) => erase_in(&mut inner.elem),
        Type::Tuple(tuple) => tuple.elems.iter_mut().for_each(erase_in),
        Type::Path(path) => {
            for segment in &mut path.path.segments {
                if let PathArguments::AngleBracketed(generics) = &mut segment.arguments {
                    for arg in &mut generics.args {
                        if let GenericArgument::Type(ty) = arg {
                            erase_in(ty);
                        }
                    }
                }
            }
        }
        _ => {}
    }
}
