//! `#[derive(Module)]` for `mlx-nn`.
//!
//! Each named field of the struct, in declaration order, is one entry of the
//! parameter tree, named after the field:
//!
//! | field type | entry |
//! |---|---|
//! | `Param` | a parameter |
//! | `Option<Param>` | a parameter when present |
//! | `Vec<M>` | child modules `name.0`, `name.1`, … |
//! | `Option<M>` | a child module when present |
//! | `bool`, numbers, `String` | nothing (settings, not parameters) |
//! | anything else | a child module (it must implement `Module`) |
//!
//! Attributes: `#[module(skip)]` leaves a field out (caches, settings),
//! `#[module(rename = "...")]` gives its entry another name, and
//! `#[module(flatten)]` lists a child's entries without a prefix of its own.
//! The crate using the derive must be able to name `mlx_nn` (inside `mlx-nn`
//! itself, `extern crate self as mlx_nn;`).

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::quote;
use syn::{
    Data, DeriveInput, Fields, GenericArgument, LitStr, PathArguments, Type, parse_macro_input,
};

/// Implements `mlx_nn::Module` for a struct with named fields (see the crate
/// documentation for how each field becomes an entry).
#[proc_macro_derive(Module, attributes(module))]
pub fn derive_module(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// How one field enters the tree.
enum Kind {
    Setting,
    Param,
    OptionalParam,
    Children,
    OptionalChild,
    Child,
}

/// A field's `#[module(...)]` settings.
#[derive(Default)]
struct FieldAttrs {
    skip: bool,
    flatten: bool,
    rename: Option<String>,
}

fn expand(input: &DeriveInput) -> syn::Result<Tokens> {
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "#[derive(Module)] supports structs only; implement Module by hand for enums",
        ));
    };
    let fields = match &data.fields {
        Fields::Named(named) => named.named.iter().collect::<Vec<_>>(),
        Fields::Unit => Vec::new(),
        Fields::Unnamed(_) => {
            return Err(syn::Error::new_spanned(
                &input.ident,
                "#[derive(Module)] needs named fields (their names are the parameter names)",
            ));
        }
    };
    let mut visit = Vec::new();
    let mut visit_mut = Vec::new();
    for field in fields {
        let attrs = field_attrs(field)?;
        if attrs.skip {
            continue;
        }
        let Some(ident) = &field.ident else { continue };
        let name = attrs.rename.unwrap_or_else(|| {
            let text = ident.to_string();
            text.strip_prefix("r#").unwrap_or(&text).to_string()
        });
        let name = if attrs.flatten { String::new() } else { name };
        let (shared, exclusive) = match kind(&field.ty) {
            Kind::Setting => continue,
            Kind::Param => (
                quote! { v.param(#name, &self.#ident); },
                quote! { v.param(#name, &mut self.#ident); },
            ),
            Kind::OptionalParam => (
                quote! { if let Some(p) = &self.#ident { v.param(#name, p); } },
                quote! { if let Some(p) = &mut self.#ident { v.param(#name, p); } },
            ),
            Kind::Children => (
                quote! { v.children(#name, &self.#ident); },
                quote! { v.children(#name, &mut self.#ident); },
            ),
            Kind::OptionalChild => (
                quote! { if let Some(m) = &self.#ident { v.child(#name, m); } },
                quote! { if let Some(m) = &mut self.#ident { v.child(#name, m); } },
            ),
            Kind::Child => (
                quote! { v.child(#name, &self.#ident); },
                quote! { v.child(#name, &mut self.#ident); },
            ),
        };
        visit.push(shared);
        visit_mut.push(exclusive);
    }
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics ::mlx_nn::Module for #ident #ty_generics #where_clause {
            fn visit<'__a>(&'__a self, v: &mut ::mlx_nn::Visitor<'_, '__a>) {
                #(#visit)*
            }
            fn visit_mut(&mut self, v: &mut ::mlx_nn::VisitorMut<'_>) {
                #(#visit_mut)*
            }
        }
    })
}

fn field_attrs(field: &syn::Field) -> syn::Result<FieldAttrs> {
    let mut out = FieldAttrs::default();
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("module")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("skip") {
                out.skip = true;
                Ok(())
            } else if meta.path.is_ident("flatten") {
                out.flatten = true;
                Ok(())
            } else if meta.path.is_ident("rename") {
                let value: LitStr = meta.value()?.parse()?;
                out.rename = Some(value.value());
                Ok(())
            } else {
                Err(meta.error("expected `skip`, `flatten` or `rename = \"...\"`"))
            }
        })?;
    }
    Ok(out)
}

/// The last segment of a type path with its single generic argument, if
/// any: `Option<Param>` → (`Option`, `Param`).
fn last_segment(ty: &Type) -> Option<(String, Option<&Type>)> {
    let Type::Path(path) = ty else { return None };
    let segment = path.path.segments.last()?;
    let inner = match &segment.arguments {
        PathArguments::AngleBracketed(args) => args.args.iter().find_map(|a| match a {
            GenericArgument::Type(t) => Some(t),
            _ => None,
        }),
        _ => None,
    };
    Some((segment.ident.to_string(), inner))
}

fn is_param(ty: &Type) -> bool {
    matches!(last_segment(ty), Some((name, None)) if name == "Param")
}

/// Types that hold settings, never parameters.
const SETTINGS: &[&str] = &[
    "bool", "f32", "f64", "i8", "i16", "i32", "i64", "isize", "u8", "u16", "u32", "u64", "usize",
    "String",
];

fn kind(ty: &Type) -> Kind {
    match last_segment(ty) {
        Some((name, None)) if SETTINGS.contains(&name.as_str()) => Kind::Setting,
        Some((name, None)) if name == "Param" => Kind::Param,
        Some((name, Some(inner))) if name == "Option" && is_param(inner) => Kind::OptionalParam,
        Some((name, Some(_))) if name == "Option" => Kind::OptionalChild,
        Some((name, Some(_))) if name == "Vec" => Kind::Children,
        _ => Kind::Child,
    }
}
