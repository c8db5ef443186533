//! `#[sim::test]`: an `async fn` test whose body runs as the main future of a fresh
//! simulation, once per seed, through `sim::run_seeds` (so `SIM_SEED`, `SIM_SEEDS`,
//! `SIM_JOBS` and `SIM_CHECK_DETERMINISM` apply, and every failing seed is printed
//! with the command that replays it). Use it as `#[sim::test]` (8 seeds) or
//! `#[sim::test(seeds = 100)]`. The body may return `()` or `Result<(), E>` with
//! `E: Display`.

use proc_macro::TokenStream;
use quote::quote;
use syn::parse::Parser;
use syn::{ItemFn, LitInt, parse_macro_input};

/// Seeds a `#[sim::test]` runs without `seeds = N` (and without `SIM_SEEDS`).
const SEEDS_DEFAULT: u64 = 8;

/// Marks an `async fn` with no arguments as a seeded simulation test (see the crate
/// docs).
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut seeds = SEEDS_DEFAULT;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("seeds") {
            let count: LitInt = meta.value()?.parse()?;
            seeds = count.base10_parse()?;
            if seeds == 0 {
                return Err(meta.error("seeds = 0 runs nothing: give at least 1"));
            }
            Ok(())
        } else {
            Err(meta.error("unknown argument: #[sim::test] takes `seeds = N`"))
        }
    });
    if let Err(error) = parser.parse(args) {
        return error.to_compile_error().into();
    }
    let function = parse_macro_input!(item as ItemFn);
    let signature = &function.sig;
    if signature.asyncness.is_none() || !signature.inputs.is_empty() {
        let message = "#[sim::test] takes an `async fn` with no arguments";
        return syn::Error::new_spanned(signature, message).to_compile_error().into();
    }
    let (name, output, body, attrs) =
        (&signature.ident, &signature.output, &function.block, &function.attrs);
    let expanded = quote! {
        #[::core::prelude::v1::test]
        #(#attrs)*
        fn #name() {
            async fn __sim_test_body() #output #body
            ::sim::run_seeds(#seeds, |sim: &mut ::sim::Sim| -> ::core::result::Result<(), ::std::string::String> {
                let value = sim.block_on(__sim_test_body()).map_err(|error| error.to_string())?;
                ::sim::TestOutcome::into_test_result(value)
            });
        }
    };
    expanded.into()
}
